"""The optimizer a `TrainConfig` names: AdamW, or Muon for the hidden weight matrices and AdamW for the rest.

    optimizer = build_optimizer(model, config)   # config.optimizer: "adamw" | "muon"

Muon (Keller Jordan et al., 2024; `torch.optim.Muon`) turns the momentum of each weight matrix into the nearest
semi-orthogonal matrix (a few Newton-Schulz iterations) and steps along that: every direction of the matrix moves
at the same rate. Its authors keep embeddings, output layers and vectors on AdamW, and so does this module:

  Muon   the weights of the model's `nn.Linear` layers, except its output layers (those that map to a
         vocabulary: `model.output_layers()`), at a peak learning rate of `muon_lr_ratio * lr`; the update is
         rescaled to the RMS of an AdamW update (Moonshot's `adjust_lr_fn="match_rms_adamw"`), so `lr`,
         `weight_decay` and the schedule keep their meaning.
  AdamW  everything else: embeddings, output layers, convolution kernels, norms, biases (`param_groups`).
"""

from __future__ import annotations

from typing import Any, Collection

import torch
from torch import nn

from toolkit.errors import ToolkitError
from toolkit.train.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float,
                 exclude: Collection[int] = frozenset()) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices / kernels (dim >= 2), none on biases, norms and other vectors.

    exclude: ids of parameters left out (the ones another optimizer updates)."""
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in exclude]
    if not params and not exclude:
        raise ToolkitError("the model has no trainable parameters")
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def muon_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The trainable weights of `model`'s `nn.Linear` layers outside its output layers (each tensor once)."""
    if not hasattr(model, "output_layers"):
        raise ToolkitError(f"optimizer muon: {type(model).__name__} does not name its output layers "
                           "(output_layers()), which stay on AdamW; use optimizer: adamw")
    excluded = {id(p) for layer in model.output_layers() for p in layer.parameters()}
    matrices: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.requires_grad and id(module.weight) not in excluded:
            matrices.setdefault(id(module.weight), module.weight)
    if not matrices:
        raise ToolkitError(f"optimizer muon: {type(model).__name__} has no trainable linear layers outside its "
                           "output layers; use optimizer: adamw")
    return list(matrices.values())


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon over `matrices` and AdamW over `adamw_groups`, stepped together as one optimizer.

    Its `param_groups` are the two optimizers' own group dicts (AdamW's first: the trainer logs the first group's
    learning rate), so a learning-rate scheduler drives both; `state_dict()` is {"muon": ..., "adamw": ...}.
    """

    def __init__(self, matrices: list[nn.Parameter], adamw_groups: list[dict[str, Any]], lr: float,
                 muon_lr: float, betas: tuple[float, float], weight_decay: float):
        self.muon = torch.optim.Muon(matrices, lr=muon_lr, weight_decay=weight_decay,
                                     adjust_lr_fn="match_rms_adamw")
        self.adamw = torch.optim.AdamW(adamw_groups, lr=lr, betas=betas) if adamw_groups else None
        super().__init__(self._groups(), {})

    def _groups(self) -> list[dict[str, Any]]:
        return (self.adamw.param_groups if self.adamw is not None else []) + self.muon.param_groups

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("MuonWithAdamW.step takes no closure")
        self.muon.step()
        if self.adamw is not None:
            self.adamw.step()

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict() if self.adamw is not None else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"muon", "adamw"}:
            raise ValueError("not the state of a Muon + AdamW optimizer (a checkpoint of another optimizer?)")
        self.muon.load_state_dict(state_dict["muon"])
        if self.adamw is not None:
            self.adamw.load_state_dict(state_dict["adamw"])
        self.param_groups = self._groups()  # loading replaced each optimizer's group dicts


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer `config.optimizer` names, over `model`'s trainable parameters, at its peak learning rate."""
    betas = (config.betas[0], config.betas[1])
    if config.optimizer == "adamw":
        return torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=betas)
    matrices = muon_matrices(model)
    others = param_groups(model, config.weight_decay, exclude={id(p) for p in matrices})
    return MuonWithAdamW(matrices, others, lr=config.lr, muon_lr=config.muon_lr_ratio * config.lr, betas=betas,
                         weight_decay=config.weight_decay)
