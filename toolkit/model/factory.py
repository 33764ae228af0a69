"""`ModelConfig` fully describes a model; `build_model(config)` is the one way to build it.

    vocab_size: 40                                                      # 0: from the recipe's tokenizer
    d_model: 256
    encoder: {name: timm, backbone: resnet18, freeze_backbone: true}   # or {name: conformer, num_layers: 12}
    decoder: {num_layers: 4, num_heads: 4, ffn_dim: 1024}               # null: CTC-only model
    ctc: false
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolkit.config import from_dict
from toolkit.errors import ConfigError
from toolkit.model.base import EncoderDecoder
from toolkit.model.ctc import CTCHead
from toolkit.model.decoder import DecoderConfig, TransformerDecoder
from toolkit.model.registry import create_encoder, encoder_config_class


@dataclass
class ModelConfig:
    vocab_size: int = 0  # 0 in a recipe's YAML: taken from the tokenizer the recipe trains
    d_model: int = 256
    encoder: dict[str, Any] = field(default_factory=lambda: {"name": "timm", "backbone": "resnet18"})
    decoder: DecoderConfig | None = field(default_factory=DecoderConfig)
    ctc: bool = False

    def __post_init__(self):
        if self.vocab_size != 0 and self.vocab_size < 5:
            raise ValueError(f"vocab_size must be at least 5 (4 special tokens + 1), got {self.vocab_size}")
        if self.decoder is None and not self.ctc:
            raise ValueError("the model needs a decoder, a CTC head (ctc: true), or both")
        name = self.encoder.get("name")
        if not isinstance(name, str):
            raise ValueError("encoder.name is required, e.g. {name: timm, backbone: resnet18}")
        if "d_model" in self.encoder:
            raise ValueError("set d_model at the top level of the model config, not under encoder")
        # Validate the encoder's own keys now, so a bad config fails when it is read, not mid-build.
        from_dict(encoder_config_class(name), self.encoder_kwargs(), "encoder")

    def encoder_kwargs(self) -> dict[str, Any]:
        kwargs = {k: v for k, v in self.encoder.items() if k != "name"}
        kwargs["d_model"] = self.d_model
        return kwargs


def build_model(config: ModelConfig | dict) -> EncoderDecoder:
    """Build an `EncoderDecoder` (encoder + optional attention decoder + optional CTC head) from its config."""
    if isinstance(config, dict):
        config = from_dict(ModelConfig, config, "model")
    if config.vocab_size == 0:
        raise ConfigError("model.vocab_size is 0: set it, or let the recipe take it from the tokenizer")
    try:
        encoder = create_encoder(config.encoder["name"], **config.encoder_kwargs())
    except ValueError as e:
        raise ConfigError(f"encoder: {e}") from None
    decoder = TransformerDecoder(config.vocab_size, config.d_model, config.decoder) if config.decoder else None
    ctc_head = CTCHead(config.d_model, config.vocab_size) if config.ctc else None
    return EncoderDecoder(encoder, decoder, ctc_head, config=config)
