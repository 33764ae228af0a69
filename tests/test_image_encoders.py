"""Image encoders (timm / torchvision CNN backbones): shapes, batching, freezing, local weights, errors, no network."""

from __future__ import annotations

import socket
import urllib.request

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from toolkit.config import from_dict
from toolkit.errors import ConfigError, ToolkitError
from toolkit.model import registry
from toolkit.model.image_encoders import (
    IMAGENET_MEAN,
    CNNImageEncoder,
    TimmImageEncoder,
    TorchvisionImageEncoder,
    sinusoidal_position_2d,
)

CASES = [
    ("timm", "test_resnet"),
    ("timm", "test_efficientnet"),
    ("timm", "test_convnext"),
    ("torchvision", "resnet18"),
    ("torchvision", "mobilenet_v3_small"),
]


def build(name: str, **cfg) -> CNNImageEncoder:
    cls = registry._ENCODERS[name]
    return cls(cls.Config(d_model=cfg.pop("d_model", 32), **cfg))


def one_line_error(exc: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_registered_image_encoders_are_all_tested():
    image = {n for n, cls in registry._ENCODERS.items() if issubclass(cls, CNNImageEncoder)}
    assert image == {"timm", "torchvision"} == {n for n, _ in CASES}


@pytest.mark.parametrize("name,backbone", CASES)
def test_shapes_and_batch_equals_items(name, backbone):
    torch.manual_seed(0)
    enc = build(name, backbone=backbone).eval()
    x = torch.rand(3, 3, 64, 96)
    with torch.no_grad():
        out = enc(x, lengths=torch.tensor([1, 2, 3]))  # lengths are ignored
        singles = [enc(x[i : i + 1]).memory for i in range(3)]
    assert out.grid == (2, 3)
    assert out.memory.shape == (3, 6, 32) and enc.d_model == 32
    assert out.lengths.dtype == torch.int64 and out.lengths.tolist() == [6, 6, 6]
    assert not out.padding_mask.any()
    torch.testing.assert_close(out.memory, torch.cat(singles), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "backbone",
    ["resnet18", "densenet121", "mnasnet0_5", "shufflenet_v2_x0_5", "regnet_y_400mf",
     "efficientnet_b0", "convnext_tiny"],
)
def test_torchvision_cut_keeps_everything_before_global_pooling(tmp_path, backbone):
    """The full model's logits = its head applied to the globally pooled feature map the encoder sees."""
    model = torchvision.models.get_model(backbone, weights=None).eval()
    torch.save(model.state_dict(), tmp_path / "w.pth")
    enc = build("torchvision", backbone=backbone, pretrained_file=str(tmp_path / "w.pth")).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        pooled = torch.nn.functional.adaptive_avg_pool2d(enc.backbone(x), 1)
        head = model.fc if hasattr(model, "fc") else model.classifier
        logits = head(pooled) if backbone.startswith("convnext") else head(pooled.flatten(1))
        torch.testing.assert_close(logits, model(x), atol=1e-4, rtol=1e-4)


def test_normalisation_constants():
    assert tuple(build("timm", backbone="test_resnet").mean.flatten().tolist()) == pytest.approx(
        timm.create_model("test_resnet").pretrained_cfg["mean"]
    )
    assert tuple(build("torchvision", backbone="resnet18").mean.flatten().tolist()) == pytest.approx(IMAGENET_MEAN)


def _bn_stats(module: torch.nn.Module) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("name,backbone", [("timm", "test_resnet"), ("torchvision", "resnet18")])
def test_frozen_backbone_stays_in_eval_and_unfreezes(name, backbone):
    enc = build(name, backbone=backbone, freeze_backbone=True).train()
    assert all(not p.requires_grad for p in enc.backbone.parameters())
    assert all(p.requires_grad for p in enc.proj.parameters())
    assert not any(m.training for m in enc.backbone.modules()) and enc.proj.training and enc.dropout.training
    before = _bn_stats(enc.backbone)
    assert before
    enc(torch.rand(2, 3, 64, 64)).memory.sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_stats(enc.backbone)))
    assert enc.proj.weight.grad is not None and all(p.grad is None for p in enc.backbone.parameters())

    enc.unfreeze_backbone()
    assert all(p.requires_grad for p in enc.backbone.parameters()) and enc.backbone.training
    enc(torch.rand(2, 3, 64, 64)).memory.sum().backward()
    assert not all(torch.equal(a, b) for a, b in zip(before, _bn_stats(enc.backbone)))
    assert any(p.grad is not None for p in enc.backbone.parameters())
    enc.eval()
    assert not enc.backbone.training


def _trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A random model's state dict with non-default BatchNorm statistics (so buffers are checked too)."""
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 64, 64))
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _save(state: dict, path) -> None:
    save_file(state, str(path)) if str(path).endswith(".safetensors") else torch.save(state, path)


def _assert_backbone_is(enc: CNNImageEncoder, state: dict[str, torch.Tensor]) -> None:
    own = enc.backbone.state_dict()
    assert set(own) <= set(state)
    for k, v in own.items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_loads_local_weights_and_drops_classifier(tmp_path, suffix):
    state = _trained_state(timm.create_model("test_resnet"))  # with its 1000-class head
    assert "fc.weight" in state
    path = tmp_path / f"weights{suffix}"
    _save(state, path)
    with pytest.raises(AssertionError):  # a fresh random init differs: the check below is meaningful
        _assert_backbone_is(build("timm", backbone="test_resnet"), state)
    enc = build("timm", backbone="test_resnet", pretrained_file=str(path))
    _assert_backbone_is(enc, state)
    assert "fc.weight" not in enc.backbone.state_dict()


@pytest.mark.parametrize(
    "backbone,suffix",
    [("mobilenet_v3_small", ".safetensors"), ("mobilenet_v3_small", ".pt"), ("mnasnet0_5", ".safetensors")],
)
def test_torchvision_loads_local_weights(tmp_path, backbone, suffix):
    # mnasnet needs module version metadata, which .safetensors files do not carry
    state = _trained_state(torchvision.models.get_model(backbone))
    path = tmp_path / f"weights{suffix}"
    _save(state, path)
    with pytest.raises(AssertionError):
        _assert_backbone_is(build("torchvision", backbone=backbone), state)
    _assert_backbone_is(build("torchvision", backbone=backbone, pretrained_file=str(path)), state)


def test_checkpoint_wrapped_in_a_dict_with_module_prefix(tmp_path):
    state = _trained_state(torchvision.models.resnet18())
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    _assert_backbone_is(build("torchvision", backbone="resnet18", pretrained_file=str(path)), state)


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "effnet.safetensors"
    save_file(_trained_state(timm.create_model("test_efficientnet")), str(path))
    with pytest.raises(ToolkitError) as exc:
        build("timm", backbone="test_resnet", pretrained_file=str(path))
    one_line_error(exc, "effnet.safetensors", "'test_resnet'", "missing key", "unexpected key")

    state = _trained_state(timm.create_model("test_resnet"))
    state["conv1.0.weight"] = state["conv1.0.weight"][:, :1].contiguous()
    save_file(state, str(path))
    with pytest.raises(ToolkitError) as exc:
        build("timm", backbone="test_resnet", pretrained_file=str(path))
    msg = one_line_error(exc, "effnet.safetensors", "1 shape mismatch (e.g. conv1.0.weight")
    assert "missing" not in msg and "unexpected" not in msg

    tv = tmp_path / "resnet18_10cls.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tv)  # torchvision loads the head strictly
    with pytest.raises(ToolkitError) as exc:
        build("torchvision", backbone="resnet18", pretrained_file=str(tv))
    one_line_error(exc, "resnet18_10cls.pth", "'resnet18'", "2 shape mismatches (e.g. fc.weight")


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name,backbone", [("timm", "test_resnet"), ("torchvision", "resnet18")])
def test_unreadable_or_missing_files_are_one_line_errors(tmp_path, name, backbone):
    (tmp_path / "noise.pth").write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    (tmp_path / "notes.safetensors").write_text("these are not weights\nat all\n")
    (tmp_path / "notes.pt").write_text("these are not weights\nat all\n")
    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    marker = tmp_path / "pwned"
    torch.save({"w": _RunsCodeWhenUnpickled(marker)}, tmp_path / "evil.pth")
    for file in ["noise.pth", "notes.safetensors", "notes.pt", "list.pth", "evil.pth", "missing.safetensors"]:
        with pytest.raises(ToolkitError) as exc:
            build(name, backbone=backbone, pretrained_file=str(tmp_path / file))
        one_line_error(exc, file, backbone)
    assert not marker.exists()  # read with torch.load(weights_only=True): no code ran


def test_unknown_and_unsupported_backbones():
    with pytest.raises(ToolkitError) as exc:
        build("timm", backbone="resnt18")
    one_line_error(exc, "unknown timm backbone 'resnt18'", "resnet18")
    with pytest.raises(ToolkitError) as exc:
        build("torchvision", backbone="resnet181")
    one_line_error(exc, "unknown torchvision backbone 'resnet181'", "resnet18")
    for name, backbone in [("timm", "hf-hub:timm/resnet18"), ("timm", "resnet18.no_such_tag"), ("timm", "test_vit"),
                           ("torchvision", "vit_b_16"), ("torchvision", "googlenet")]:
        with pytest.raises(ToolkitError) as exc:
            build(name, backbone=backbone)
        one_line_error(exc, backbone, *(["not supported"] if name == "torchvision" else []))
    with pytest.raises(ToolkitError) as exc:
        build("timm", backbone="test_vit")
    one_line_error(exc, "not a CNN")


def test_config_validation():
    cfg = from_dict(TimmImageEncoder.Config, {"backbone": "test_resnet", "freeze_backbone": True})
    assert cfg.d_model == 256 and cfg.pretrained_file is None and cfg.dropout == 0.1
    with pytest.raises(ConfigError):
        from_dict(TorchvisionImageEncoder.Config, {"d_model": 30})
    with pytest.raises(ConfigError):
        from_dict(TorchvisionImageEncoder.Config, {"weights": "imagenet"})


@pytest.fixture
def no_network(monkeypatch):
    attempts: list[str] = []

    def trap(what):
        def refuse(*args, **kwargs):
            attempts.append(what)
            raise OSError(f"network access attempted: {what}")

        return refuse

    monkeypatch.setattr(socket.socket, "connect", trap("socket.connect"))
    monkeypatch.setattr(socket, "create_connection", trap("socket.create_connection"))
    monkeypatch.setattr(urllib.request, "urlopen", trap("urlopen"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", trap("torch.hub.load_state_dict_from_url"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", trap("torch.hub.download_url_to_file"))
    for module in (timm.models._builder, timm.models._hub):
        for fn in ["load_pretrained", "download_cached_file", "hf_hub_download", "download_from_hf",
                   "load_state_dict_from_hf", "load_state_dict_from_url", "load_custom_from_hf"]:
            if hasattr(module, fn):
                monkeypatch.setattr(module, fn, trap(f"{module.__name__}.{fn}"))
    return attempts


def test_no_network_access(tmp_path, no_network):
    with pytest.raises(OSError):  # the trap is armed
        urllib.request.urlopen("https://example.com")
    no_network.clear()
    with pytest.raises(OSError):  # timm's own pretrained path would be caught
        timm.create_model("test_resnet", pretrained=True)
    assert no_network
    no_network.clear()

    path = tmp_path / "w.safetensors"
    save_file(_trained_state(timm.create_model("test_resnet")), str(path))
    build("timm", backbone="test_resnet")
    build("timm", backbone="test_resnet", pretrained_file=str(path))
    tv = tmp_path / "w.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tv)
    build("torchvision", backbone="mobilenet_v3_small", pretrained_file=str(tv))
    assert no_network == []


def test_sinusoidal_position_2d():
    h, w, dim = 3, 5, 16
    pe = sinusoidal_position_2d(h, w, dim)
    assert pe.shape == (h * w, dim) and pe.dtype == torch.float32
    dist = torch.cdist(pe, pe) + torch.eye(h * w) * 1e9
    assert dist.min() > 0.1  # distinct positions, distinct vectors
    grid = pe.view(h, w, dim)
    assert torch.equal(grid[:, :1, : dim // 2].expand(h, w, dim // 2), grid[..., : dim // 2])  # rows in the first half
    assert torch.equal(grid[:1, :, dim // 2 :].expand(h, w, dim // 2), grid[..., dim // 2 :])  # columns in the second
    assert sinusoidal_position_2d(1, 1, 8).shape == (1, 8)
    assert sinusoidal_position_2d(40, 1, 256).shape == (40, 256)
    with pytest.raises(ValueError):
        sinusoidal_position_2d(2, 2, 10)
