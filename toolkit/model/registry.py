"""A small registry of encoders, so a config names a component: ``encoder: {name: timm, backbone: resnet18}``.

Each registered encoder class declares a `Config` dataclass; `create_encoder(name, **cfg)` validates `cfg`
against it (unknown keys and wrong types are refused with a one-line error) and builds the encoder.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from toolkit.config import from_dict
from toolkit.errors import ConfigError
from toolkit.model.base import Encoder

_ENCODERS: dict[str, type[Encoder]] = {}

E = TypeVar("E", bound=type[Encoder])


def register_encoder(name: str) -> Callable[[E], E]:
    """Class decorator: make an `Encoder` subclass with a nested `Config` dataclass buildable by `name`."""

    def wrap(cls: E) -> E:
        if name in _ENCODERS:
            raise ValueError(f"encoder {name!r} is registered twice")
        if not hasattr(cls, "Config"):
            raise TypeError(f"{cls.__name__} must define a nested Config dataclass")
        _ENCODERS[name] = cls
        return cls

    return wrap


def _load_builtin() -> None:
    # Importing the modules runs their @register_encoder decorators.
    from toolkit.model import audio_encoders, image_encoders  # noqa: F401


def list_encoders() -> list[str]:
    """Names accepted by `create_encoder`."""
    _load_builtin()
    return sorted(_ENCODERS)


def encoder_config_class(name: str) -> type:
    _load_builtin()
    if name not in _ENCODERS:
        raise ConfigError(f"encoder.name: unknown encoder {name!r} (known: {', '.join(sorted(_ENCODERS))})")
    return _ENCODERS[name].Config


def create_encoder(name: str, where: str = "encoder", **cfg) -> Encoder:
    """Build the encoder registered as `name` from keyword config values (validated against its Config)."""
    config = from_dict(encoder_config_class(name), cfg, where)
    return _ENCODERS[name](config)
