"""Image encoders: a pretrained-style CNN backbone whose last feature map becomes the encoder memory.

    images (B, 3, H, W) in [0, 1] -> normalise -> backbone -> (B, C, H', W') -> flatten (B, H'W', C)
        -> Linear(C, d_model) + LayerNorm + dropout + 2-D sinusoidal positions -> memory (B, H'W', d_model)

Backbones come from timm (`name: timm`) or torchvision (`name: torchvision`) by model name. Weights are only
ever read from a local `pretrained_file` (.safetensors, or .pth/.pt/.bin read with `torch.load(weights_only=True)`);
nothing is downloaded. timm and torchvision are imported lazily, when an encoder is built.
"""

from __future__ import annotations

import difflib
import math
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from toolkit.errors import ToolkitError
from toolkit.model.base import Encoder, EncoderOutput
from toolkit.model.registry import register_encoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sinusoidal_position_2d(h: int, w: int, dim: int, device: torch.device | str | None = None) -> Tensor:
    """Fixed 2-D sine/cosine position embedding `(h*w, dim)`, row-major over the `(h, w)` grid.

    The first `dim/2` channels encode the row, the last `dim/2` the column, each as `[sin(p*f), cos(p*f)]`
    over `dim/4` geometric frequencies `f = 10000^(-k/(dim/4))` (the transformer's 1-D code, once per axis).
    """
    if dim % 4:
        raise ValueError(f"2-D position embedding needs a dim divisible by 4, got {dim}")
    quarter = dim // 4
    freqs = torch.exp(torch.arange(quarter, device=device, dtype=torch.float32) * (-math.log(10000.0) / quarter))

    def axis(n: int) -> Tensor:  # (n, dim/2)
        angles = torch.arange(n, device=device, dtype=torch.float32)[:, None] * freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    rows = axis(h)[:, None, :].expand(h, w, 2 * quarter)
    cols = axis(w)[None, :, :].expand(h, w, 2 * quarter)
    return torch.cat([rows, cols], dim=-1).reshape(h * w, dim)


def _close_matches(name: str, candidates: list[str], wildcard: list[str] | None = None) -> str:
    matches = (wildcard or [])[:6] or difflib.get_close_matches(name, candidates, n=6, cutoff=0.6)
    return f"close matches: {', '.join(matches)}" if matches else "no close matches"


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


def read_state_dict(path: str | Path, what: str) -> dict[str, Tensor]:
    """Read a state dict from a local .safetensors or torch file (`torch.load(weights_only=True)` only).

    Accepts a checkpoint dict wrapping it under `state_dict` / `model` and strips a DataParallel `module.` prefix.
    Every failure is a one-line `ToolkitError` naming `path` and `what` (e.g. "timm backbone 'resnet18'").
    """
    path = Path(path)
    if not path.is_file():
        problem = "is not a file" if path.exists() else "not found"
        raise ToolkitError(f"pretrained_file {str(path)!r} for {what} {problem}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ToolkitError(f"{path}: holds pickled Python objects, not just tensors; refused for {what} "
                           "(only weights are read, with torch.load(weights_only=True))") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input error
        raise ToolkitError(f"{path}: not a readable weights file for {what} ({_first_line(e)})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    is_state = isinstance(obj, dict) and obj and all(isinstance(v, Tensor) for v in obj.values())
    if not is_state or not all(isinstance(k, str) for k in obj):
        raise ToolkitError(f"{path}: not a state dict of tensors (expected for {what})")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_weights(
    model: nn.Module, state: dict[str, Tensor], path: str | Path, what: str, drop: tuple[str, ...] = ()
) -> None:
    """Strictly load `state` into `model`; file keys under a `drop` prefix (the classifier) that it lacks are ignored.

    A mismatch is one `ToolkitError` line counting missing / unexpected keys and shape mismatches, with examples.
    """
    own = model.state_dict()
    # Module versions (MNASNet checks its own) come with torch.save'd state dicts; .safetensors lack them: use ours.
    metadata = getattr(state, "_metadata", None) or getattr(own, "_metadata", None)
    state = OrderedDict((k, v) for k, v in state.items() if k in own or not any(k.startswith(p + ".") for p in drop))
    state._metadata = metadata  # type: ignore[attr-defined]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        problems = ((missing, "missing key"), (unexpected, "unexpected key"), (shapes, "shape mismatch"))
        parts = [f"{len(keys)} {noun}{'' if len(keys) == 1 else 'es' if noun.endswith('h') else 's'} (e.g. {keys[0]})"
                 for keys, noun in problems if keys]
        raise ToolkitError(f"{Path(path)} does not match {what}: {', '.join(parts)}")
    model.load_state_dict(state, strict=True)


class CNNImageEncoder(Encoder):
    """A CNN `backbone` mapping normalised `(B, 3, H, W)` images to `(B, C, H', W')`, projected to `d_model`.

    forward(x (B, 3, H, W) float in [0, 1]) -> EncoderOutput(memory (B, H'W', d_model), lengths (B,) = H'W',
    grid (H', W'), by which attention weights reshape into heatmaps). A frozen backbone has `requires_grad=False`
    and stays in eval mode (BatchNorm statistics fixed) under `.train()`.
    """

    takes_images = True  # what `Captioner` checks (an exported twin, toolkit.export.runtime, says so too)

    def __init__(
        self,
        backbone: nn.Module,
        channels: int,
        d_model: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        dropout: float = 0.1,
        freeze_backbone: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.d_model = d_model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.proj = nn.Linear(channels, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.backbone_frozen = False
        if freeze_backbone:
            self.freeze_backbone()

    def features(self, x: Tensor) -> Tensor:
        """`(B, 3, H, W)` normalised images -> `(B, C, H', W')` last feature map."""
        return self.backbone(x)

    def freeze_backbone(self) -> None:
        """Stop training the backbone: no gradients, eval mode kept through `.train()`."""
        self.backbone_frozen = True
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def unfreeze_backbone(self) -> None:
        """Train the backbone again (it follows the module's train/eval mode)."""
        self.backbone_frozen = False
        self.backbone.requires_grad_(True)
        self.backbone.train(self.training)

    def train(self, mode: bool = True) -> "CNNImageEncoder":
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """`x`: `(B, 3, H, W)` images in [0, 1]; `lengths` is ignored (images are not padded)."""
        if x.dim() != 4 or x.size(1) != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        x = (x - self.mean) / self.std
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.backbone_frozen):
            fmap = self.features(x)  # (B, C, H', W')
        b, _, h, w = fmap.shape
        memory = self.norm(self.proj(fmap.flatten(2).transpose(1, 2)))  # (B, H'W', d_model)
        memory = self.dropout(memory) + sinusoidal_position_2d(h, w, self.d_model, memory.device).to(memory.dtype)
        return EncoderOutput(memory, torch.full((b,), h * w, dtype=torch.long, device=memory.device), grid=(h, w))


@dataclass
class ImageEncoderConfig:
    """Config of the image encoders; `backbone` is a timm or torchvision model name."""

    backbone: str = "resnet18"
    d_model: int = 256
    pretrained_file: str | None = None
    freeze_backbone: bool = False
    dropout: float = 0.1

    def __post_init__(self):
        if self.d_model <= 0 or self.d_model % 4:
            raise ValueError(f"d_model must be a positive multiple of 4 (2-D sine/cosine codes), got {self.d_model}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def _probe_channels(backbone: nn.Module, size: tuple[int, int], what: str, call=None) -> int:
    """Run one dummy image through `backbone` (no grad, eval) and return the channel count of its 4-D output."""
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = (call or backbone)(torch.zeros(1, 3, *size))
    except Exception as e:  # noqa: BLE001
        raise ToolkitError(f"{what} failed on a {size[0]}x{size[1]} test image ({_first_line(e)})") from None
    finally:
        backbone.train(was_training)
    if not isinstance(out, Tensor) or out.dim() != 4:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ToolkitError(f"{what} is not a CNN: its features are {shape}, not a (B, C, H, W) feature map")
    return out.size(1)


@register_encoder("timm")
class TimmImageEncoder(CNNImageEncoder):
    """Any timm CNN by name (`resnet18`, `efficientnet_b0`, `convnext_tiny`, ...), headless: `forward_features`."""

    Config = ImageEncoderConfig

    def __init__(self, config: ImageEncoderConfig):
        import timm

        name, what = config.backbone, f"timm backbone {config.backbone!r}"
        if not timm.is_model(name):  # also refuses "hf-hub:..." names, which would fetch a config
            matches = _close_matches(name, timm.list_models(), timm.list_models(f"*{name}*"))
            raise ToolkitError(f"unknown timm backbone {name!r} ({matches})")
        try:
            try:
                model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
            except TypeError:  # a model without a global_pool argument; forward_features never pools anyway
                model = timm.create_model(name, pretrained=False, num_classes=0)
        except Exception as e:  # noqa: BLE001 - e.g. "resnet18.bogus_tag"
            raise ToolkitError(f"cannot build {what} ({_first_line(e)})") from None
        cfg = model.pretrained_cfg or {}
        if config.pretrained_file:
            classifier = cfg.get("classifier") or ()
            drop = (classifier,) if isinstance(classifier, str) else tuple(classifier)
            load_weights(model, read_state_dict(config.pretrained_file, what), config.pretrained_file, what, drop)
        size = tuple(cfg.get("input_size", (3, 224, 224))[-2:])  # the size the model is made for (ViTs need it)
        channels = _probe_channels(model, size, what, model.forward_features)
        mean, std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
        super().__init__(model, channels, config.d_model, mean, std, config.dropout, config.freeze_backbone)

    def features(self, x: Tensor) -> Tensor:
        return self.backbone.forward_features(x)


_TV_HEAD = {"avgpool", "fc", "classifier", "dropout"}
_TV_UNSUPPORTED = ("vit_", "swin_", "maxvit", "inception", "googlenet")  # token outputs / auxiliary heads


@register_encoder("torchvision")
class TorchvisionImageEncoder(CNNImageEncoder):
    """A torchvision classification CNN by name, cut before its pooling/classifier; ImageNet normalisation.

    The backbone keeps the full model's module names (`backbone.layer1...`, `backbone.features...`), so its
    state dict is the saved model's minus the head.
    """

    Config = ImageEncoderConfig

    def __init__(self, config: ImageEncoderConfig):
        import torchvision

        name, what = config.backbone, f"torchvision backbone {config.backbone!r}"
        known = torchvision.models.list_models(module=torchvision.models)
        if name not in known:
            matches = _close_matches(name, known, [k for k in known if name.lower() in k])
            raise ToolkitError(f"unknown torchvision backbone {name!r} ({matches})")
        if name.startswith(_TV_UNSUPPORTED):
            raise ToolkitError(f"{what} is not supported (not a plain CNN with one feature map); use a ResNet, RegNet, "
                               "EfficientNet, MobileNet, ConvNeXt, DenseNet, VGG, ... or a timm CNN")
        model = torchvision.models.get_model(name, weights=None)
        if config.pretrained_file:
            load_weights(model, read_state_dict(config.pretrained_file, what), config.pretrained_file, what)
        if hasattr(model, "features"):  # vgg, alexnet, squeezenet, mobilenet, efficientnet, convnext, densenet
            parts = [("features", model.features)]
            if isinstance(model, torchvision.models.DenseNet):  # its forward applies a last ReLU after .features
                parts.append(("relu", nn.ReLU()))
        elif hasattr(model, "layers"):  # mnasnet
            parts = [("layers", model.layers)]
        else:  # resnet, resnext, wide_resnet, regnet, shufflenet: children in forward order, minus the head
            parts = [(n, m) for n, m in model.named_children() if n not in _TV_HEAD]
        backbone = nn.Sequential(OrderedDict(parts))
        channels = _probe_channels(backbone, (224, 224), what)
        super().__init__(
            backbone, channels, config.d_model, IMAGENET_MEAN, IMAGENET_STD, config.dropout, config.freeze_backbone
        )
