"""Typed configs: YAML + overrides, unknown keys and wrong types refused in one line naming file and field."""

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pytest

from toolkit.config import apply_overrides, from_dict, load_config, to_dict
from toolkit.errors import ConfigError
from toolkit.model import DecoderConfig, ModelConfig


@dataclass
class Inner:
    size: int = 3
    rate: float = 0.5


@dataclass
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None
    tags: list[str] = field(default_factory=list)
    mode: Literal["a", "b"] = "a"
    flag: bool = False


def test_from_dict_builds_nested_and_converts_int_to_float():
    cfg = from_dict(Outer, {"name": "x", "inner": {"rate": 1}, "maybe": {"size": 7}, "tags": ["p"], "mode": "b"})
    assert cfg.inner == Inner(3, 1.0) and isinstance(cfg.inner.rate, float)
    assert cfg.maybe == Inner(7, 0.5) and cfg.tags == ["p"] and cfg.mode == "b"
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data,match",
    [
        ({"name": "x", "bogus": 1}, r"cfg: unknown key 'bogus' for Outer"),
        ({}, r"missing required key 'name'"),
        ({"name": 3}, r"cfg.name: expected a string"),
        ({"name": "x", "inner": {"size": "3"}}, r"cfg.inner.size: expected an integer"),
        ({"name": "x", "inner": {"size": 2.5}}, r"cfg.inner.size: expected an integer"),
        ({"name": "x", "flag": "yes"}, r"cfg.flag: expected true/false"),
        ({"name": "x", "mode": "c"}, r"cfg.mode: expected one of \['a', 'b'\]"),
        ({"name": "x", "maybe": {"zzz": 1}}, r"cfg.maybe: unknown key 'zzz'"),
        ({"name": "x", "tags": "p"}, r"cfg.tags: expected a list"),
    ],
)
def test_bad_values_are_refused_with_their_path(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(Outer, data, "cfg")


@dataclass
class Renamed:
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"weight": "loss_weight"}
    loss_weight: float = 0.3


def test_a_renamed_key_is_refused_with_its_new_name():
    assert from_dict(Renamed, {"loss_weight": 0.5}) == Renamed(0.5)
    with pytest.raises(ConfigError, match=r"^cfg.inner: key 'weight' of Renamed is now called 'loss_weight': "
                                          r"rename it$"):
        from_dict(Renamed, {"weight": 0.5}, "cfg.inner")
    with pytest.raises(ConfigError, match=r"^cfg: unknown key 'bogus' for Renamed"):
        from_dict(Renamed, {"bogus": 1}, "cfg")


def test_overrides_and_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: base\ninner:\n  size: 4\n")
    cfg = load_config(Outer, path, ["inner.rate=0.25", "tags=[a, b]", "maybe.size=9", "flag=true"])
    assert cfg == Outer("base", Inner(4, 0.25), Inner(9, 0.5), ["a", "b"], "a", True)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match=r"c.yaml.inner.size: expected an integer"):
        load_config(Outer, path, ["inner.size=big"])


def test_yaml_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninner: [1, 2\nmode: a\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML") as e:
        load_config(Outer, bad)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Outer, tmp_path / "list.yaml")


def test_model_config_validates_encoder_keys_when_read():
    with pytest.raises(ConfigError, match=r"encoder: unknown key 'layers'"):
        from_dict(ModelConfig, {"vocab_size": 10, "encoder": {"name": "conformer", "layers": 2}})
    with pytest.raises(ConfigError, match="unknown encoder 'nope'"):
        from_dict(ModelConfig, {"vocab_size": 10, "encoder": {"name": "nope"}})
    with pytest.raises(ConfigError, match="needs a decoder, a CTC head"):
        from_dict(ModelConfig, {"vocab_size": 10, "decoder": None})
    with pytest.raises(ConfigError, match="decoder.dropout must be in"):
        from_dict(ModelConfig, {"vocab_size": 10, "decoder": {"dropout": 1.5}})
    cfg = from_dict(ModelConfig, {"vocab_size": 10, "decoder": None, "ctc": True,
                                  "encoder": {"name": "conformer", "num_layers": 2}})
    assert cfg.decoder is None and cfg.encoder_kwargs()["d_model"] == 256
    assert from_dict(ModelConfig, {"vocab_size": 10}).decoder == DecoderConfig()
