"""The training loop: it learns, logs, checkpoints atomically, resumes exactly, averages, and refuses bad input."""

import csv
import dataclasses
import json
import math
import os
import pickle

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from toolkit.config import from_dict
from toolkit.errors import ToolkitError
from toolkit.lm.model import LstmLM, LstmLMConfig
from toolkit.model import build_model
from toolkit.train import TrainConfig, Trainer, average_checkpoints, latest_checkpoint
from toolkit.train import checkpoint as ckpt
from toolkit.train.checkpoint import list_checkpoints, load_trainer_state, prune, save_checkpoint
from toolkit.train.optim import build_optimizer
from toolkit.train.schedule import build_scheduler, lr_factor

DIM = 8


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one intra-op thread is fastest, and immune to a busy machine's thread contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def regression_data(n: int = 256, seed: int = 0) -> TensorDataset:
    """`n` points of one fixed function (the seed draws the inputs)."""
    w = torch.randn(DIM, 1, generator=torch.Generator().manual_seed(1234))
    x = torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed))
    y = torch.tanh(x @ w) + 0.5
    return TensorDataset(x, y)


class Toy(nn.Module):
    """A tiny MLP (no batch-dependent layers): matrices get weight decay, biases and the norm do not."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(DIM, 32), nn.LayerNorm(32), nn.Tanh(), nn.Dropout(dropout), nn.Linear(32, 1))

    def forward(self, x):
        return self.net(x)

    def output_layers(self):
        return [self.net[4]]


def mse(model, batch):
    x, y = batch
    pred = model(x)
    return {"loss": F.mse_loss(pred.float(), y), "mae": (pred.float() - y).abs().mean()}


def validator(data: TensorDataset):
    def validate(model):
        assert not model.training and not torch.is_grad_enabled()
        return {"loss": F.mse_loss(model(data.tensors[0]), data.tensors[1]).item()}

    return validate


def save_state(model, path, info):
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    (path / "info.json").write_text(json.dumps(info))


def trainer(out, cfg, loader, model=None, loss_fn=mse, validate_fn=None, seed=0):
    if model is None:
        torch.manual_seed(seed)
        model = Toy()
    return Trainer(model, cfg, out, loader, loss_fn, validate_fn, save_state)


def read_log(out):
    with open(out / "train_log.csv", newline="") as f:
        return list(csv.DictReader(f))


def names(directory):
    return [p.name for p in list_checkpoints(directory)]


def test_learns_and_writes_log_plot_checkpoints_and_bundles(tmp_path):
    data = regression_data()
    loader = DataLoader(data, batch_size=16, shuffle=True)
    cfg = TrainConfig(max_steps=60, lr=1e-2, warmup_steps=5, valid_every=20, log_every=5)
    result = trainer(tmp_path, cfg, loader, validate_fn=validator(regression_data(64, seed=1))).fit()

    rows = read_log(tmp_path)
    losses = [float(r["loss"]) for r in rows if r["loss"]]
    assert losses[-1] < 0.2 * losses[0]
    assert list(rows[0])[:3] == ["step", "epoch", "loss"]
    assert {"mae", "lr", "grad_norm", "items_per_s", "elapsed_s", "valid_loss"} <= set(rows[0])
    assert [int(r["step"]) for r in rows if r["valid_loss"]] == [20, 40, 60]
    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert (result.steps, result.epochs, result.stop_reason) == (60, 3, "max_steps")  # 16 batches per epoch
    assert result.best_step in (20, 40, 60)
    assert result.best_metric == pytest.approx(min(float(r["valid_loss"]) for r in rows if r["valid_loss"]), rel=1e-5)
    assert result.final_metrics["loss"] == pytest.approx(float(rows[-1]["valid_loss"]), rel=1e-5)
    assert result.items_per_second > 0 and result.bad_batches == result.empty_batches == 0
    assert json.loads((result.best_path / "info.json").read_text())["step"] == result.best_step
    assert json.loads((result.final_path / "info.json").read_text())["step"] == 60
    assert names(tmp_path / "checkpoints") == ["ckpt-00000020", "ckpt-00000040", "ckpt-00000060"]
    final = load_file(str(result.final_path / "model.safetensors"))
    assert all(torch.equal(final[k], v) for k, v in result_model_state(tmp_path).items())


def result_model_state(out):
    return load_file(str(latest_checkpoint(out / "checkpoints") / "model.safetensors"))


def test_config_limits_and_types():
    with pytest.raises(ValueError, match="at least one"):
        TrainConfig()
    with pytest.raises(ValueError, match="keep_last"):
        TrainConfig(max_steps=10, average_last=5, keep_last=3)
    cfg = from_dict(TrainConfig, {"max_epochs": 2, "betas": [0.9, 0.95], "amp": "bf16"})
    assert cfg.betas == [0.9, 0.95] and cfg.amp == "bf16"
    with pytest.raises(ToolkitError, match="horizon"):  # cosine with only a time limit and no schedule_steps
        trainer("unused", TrainConfig(max_minutes=1.0), [])


def test_schedules():
    cos = lr_factor(TrainConfig(max_steps=110, warmup_steps=10, min_lr_ratio=0.1), 110)
    assert [cos(s) for s in (0, 4, 9, 10)] == pytest.approx([0.1, 0.5, 1.0, 1.0])
    assert cos(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    assert cos(110) == pytest.approx(0.1) and cos(500) == pytest.approx(0.1)

    noam = lr_factor(TrainConfig(max_steps=1, schedule="noam", warmup_steps=100), None)
    assert noam(49) == pytest.approx(0.5) and noam(99) == pytest.approx(1.0) and noam(399) == pytest.approx(0.5)
    decay = [noam(s) for s in range(99, 1000)]
    assert all(a > b for a, b in zip(decay, decay[1:]))

    const = lr_factor(TrainConfig(max_steps=1, schedule="constant", warmup_steps=4), None)
    assert [const(s) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1])

    # as a LambdaLR stepped once per update, the lr of update s is lr * factor(s)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = build_scheduler(opt, TrainConfig(max_steps=110, warmup_steps=10, min_lr_ratio=0.1, lr=2.0), 110)
    lrs = []
    for _ in range(61):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.2) and lrs[9] == pytest.approx(2.0) and lrs[60] == pytest.approx(1.1)

    # with max_epochs only, the cosine horizon is epochs x updates per epoch
    loader = DataLoader(regression_data(64), batch_size=8)  # 8 batches, 4 updates per epoch
    t = trainer("unused", TrainConfig(max_epochs=3, accum_steps=2, warmup_steps=0, min_lr_ratio=0.0), loader)
    assert t._horizon() == 12


def test_weight_decay_only_on_matrices():
    t = trainer("unused", TrainConfig(max_steps=1, weight_decay=0.1, betas=[0.8, 0.9]), [])
    decay, no_decay = t.optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0 and decay["betas"] == (0.8, 0.9)
    assert [p.dim() for p in decay["params"]] == [2, 2]  # the two Linear weights
    assert [p.dim() for p in no_decay["params"]] == [1, 1, 1, 1]  # biases, LayerNorm weight and bias


def test_muon_takes_the_hidden_linear_weights_and_adamw_the_rest(tmp_path):
    model = build_model({
        "vocab_size": 12, "d_model": 16, "ctc": True,
        "encoder": {"name": "conformer", "num_layers": 1, "num_heads": 2, "ffn_dim": 32, "n_mels": 20},
        "decoder": {"num_layers": 1, "num_heads": 2, "ffn_dim": 32, "max_len": 16, "tie_embeddings": False},
    })
    cfg = TrainConfig(max_steps=1, optimizer="muon", muon_lr_ratio=2.0, lr=1e-3, weight_decay=0.1)
    opt = Trainer(model, cfg, tmp_path, [], lambda m, b: {}, None, save_state).optimizer
    decay, no_decay, muon = opt.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    linear = {n + ".weight" for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert {names[id(p)] for p in muon["params"]} == linear - {"ctc_head.proj.weight", "decoder.output.weight"}
    assert {"decoder.embed.weight", "decoder.output.weight", "ctc_head.proj.weight",
            "encoder.conformer.blocks.0.conv.depthwise.weight"} <= {names[id(p)] for p in decay["params"]}
    assert all(p.dim() == 1 for p in no_decay["params"])
    assert sorted(names[id(p)] for g in opt.param_groups for p in g["params"]) == sorted(names.values())
    peaks = (muon["initial_lr"], decay["initial_lr"], muon["weight_decay"], decay["weight_decay"])
    assert peaks == (2e-3, 1e-3, 0.1, 0.1)

    lm = LstmLM(LstmLMConfig(vocab_size=10, embed_dim=8, hidden_dim=8))  # no hidden linear layer: refused
    with pytest.raises(ToolkitError, match="no trainable linear layers outside its output layers"):
        build_optimizer(lm, cfg)
    plain = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    with pytest.raises(ToolkitError, match="does not name its output layers"):
        build_optimizer(plain, cfg)


def test_muon_learns_resumes_exactly_and_refuses_an_adamw_checkpoint(tmp_path):
    """One schedule drives both optimizers; a run cut at a checkpoint and resumed ends bit for bit where an
    uninterrupted one does; a checkpoint of an AdamW run does not fit a Muon trainer."""
    data = regression_data(128)
    cfg = TrainConfig(max_steps=24, valid_every=8, optimizer="muon", lr=1e-2, warmup_steps=4, log_every=4)
    loader = DataLoader(data, batch_size=16, shuffle=True)

    def run(out, config, resume=False):
        t = trainer(out, config, loader)
        return t, t.fit(resume=resume)

    full, result = run(tmp_path / "full", cfg)
    losses = [float(r["loss"]) for r in read_log(tmp_path / "full") if r["loss"]]
    assert result.bad_batches == 0 and losses[-1] < 0.2 * losses[0]
    decay, no_decay, muon = full.optimizer.param_groups
    assert decay["lr"] == no_decay["lr"] < 1e-3 and muon["lr"] == pytest.approx(3 * decay["lr"])  # the cosine's end
    assert [float(r["lr"]) for r in read_log(tmp_path / "full")][0] == pytest.approx(1e-2)  # AdamW's, as logged

    run(tmp_path / "cut", dataclasses.replace(cfg, max_steps=16, schedule_steps=24))
    resumed, result = run(tmp_path / "cut", cfg, resume=True)
    assert result.steps == 24
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k

    run(tmp_path / "adamw", dataclasses.replace(cfg, optimizer="adamw", max_steps=8))
    with pytest.raises(ToolkitError, match="does not fit this model or trainer"):
        run(tmp_path / "adamw", cfg, resume=True)


def test_gradient_accumulation_matches_a_larger_batch(tmp_path):
    """accum_steps=2 over batches of 8 == one batch of 16: each loss (a per-item mean) is divided by accum_steps."""
    data = regression_data(64)

    def run(out, batch_size, accum):
        cfg = TrainConfig(max_steps=4, accum_steps=accum, lr=1e-2, warmup_steps=2, grad_clip=100.0, valid_every=100)
        t = trainer(out, cfg, DataLoader(data, batch_size=batch_size, shuffle=False))
        grads = []
        t.optimizer.register_step_pre_hook(lambda opt, args, kw: grads.append([p.grad.clone() for p in t.params]))
        t.fit()
        return grads, t.model.state_dict(), read_log(out)

    grads_a, weights_a, log_a = run(tmp_path / "a", 8, 2)
    grads_b, weights_b, log_b = run(tmp_path / "b", 16, 1)
    assert len(grads_a) == len(grads_b) == 4
    for ga, gb in zip(grads_a, grads_b):
        for a, b in zip(ga, gb):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for k in weights_a:
        torch.testing.assert_close(weights_a[k], weights_b[k], rtol=1e-5, atol=1e-6)
    assert float(log_a[-1]["loss"]) == pytest.approx(float(log_b[-1]["loss"]), rel=1e-5)


def test_keep_last_prunes_old_checkpoints(tmp_path):
    loader = DataLoader(regression_data(64), batch_size=16)
    trainer(tmp_path, TrainConfig(max_steps=10, valid_every=2, keep_last=2), loader).fit()
    assert names(tmp_path / "checkpoints") == ["ckpt-00000008", "ckpt-00000010"]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["ckpt-00000008", "ckpt-00000010"]  # no leftovers
    assert prune(tmp_path / "checkpoints", 1)[0].name == "ckpt-00000008"
    assert names(tmp_path / "checkpoints") == ["ckpt-00000010"]


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    model = Toy()
    save_checkpoint(root, 1, model.state_dict(), {"step": 1}, {"step": 1})

    def replace_fails(src, dst):
        raise OSError("crash at the rename")

    def save_file_fails(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a safetensors file")
        raise OSError("disk full")

    for target, crash in (("os.replace", replace_fails), ("save_file", save_file_fails)):
        with monkeypatch.context() as m:
            if target == "os.replace":
                m.setattr(ckpt.os, "replace", crash)
            else:
                m.setattr(ckpt, "save_file", crash)
            with pytest.raises(OSError):
                save_checkpoint(root, 2, model.state_dict(), {"step": 2}, {"step": 2})
        assert os.listdir(root) == ["ckpt-00000001"]  # the temporary directory is gone too

    # a process killed mid-write (no cleanup) leaves a hidden temporary directory; a damaged ckpt-* lacks files
    (root / ".ckpt-00000003.tmp-x").mkdir()
    (root / ".ckpt-00000003.tmp-x" / "model.safetensors").write_bytes(b"partial")
    (root / "ckpt-00000004").mkdir()
    (root / "ckpt-00000004" / "meta.json").write_text("{}")
    assert latest_checkpoint(root).name == "ckpt-00000001"
    assert load_trainer_state(latest_checkpoint(root))["step"] == 1
    assert ckpt.load_model_state(latest_checkpoint(root)).keys() == model.state_dict().keys()
    assert [p.name for p in ckpt.remove_partial(root)] == [".ckpt-00000003.tmp-x"]

    # in a training run: the second checkpoint write crashes, the first one stays the latest and resumes
    out = tmp_path / "run"
    loader = DataLoader(regression_data(64), batch_size=16)
    calls = []
    real_save = ckpt.save_file

    def second_save_crashes(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", second_save_crashes)
    with pytest.raises(OSError, match="disk full"):
        trainer(out, TrainConfig(max_steps=6, valid_every=2), loader).fit()
    assert sorted(os.listdir(out / "checkpoints")) == ["ckpt-00000002"]
    assert trainer(out, TrainConfig(max_steps=6, valid_every=2), loader).fit(resume=True).steps == 6


class EpochSampler(Sampler):
    """A shuffling sampler whose order is a function of (seed, epoch) only."""

    def __init__(self, n, seed=0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist())

    def __len__(self):
        return self.n


class Crash(Exception):
    pass


@pytest.mark.parametrize("order", ["dataloader_shuffle", "epoch_sampler"])
def test_resume_continues_exactly(tmp_path, order):
    """Interrupted mid-epoch, resumed from the latest checkpoint: the same final weights as one uninterrupted run
    (bit for bit on CPU), with dropout on, accumulation, and the loader's order replayed."""
    data = regression_data(128)  # 8 batches of 16 per epoch, 4 updates per epoch with accum_steps=2
    cfg = TrainConfig(max_steps=14, valid_every=5, accum_steps=2, lr=1e-2, warmup_steps=3, keep_last=5)

    def loader():
        if order == "dataloader_shuffle":
            return DataLoader(data, batch_size=16, shuffle=True)
        return DataLoader(data, batch_size=16, sampler=EpochSampler(len(data)))

    def run(out, crash_at=None, resume=False):
        calls = []

        def loss_fn(model, batch):
            calls.append(1)
            if len(calls) == crash_at:
                raise Crash
            return mse(model, batch)

        torch.manual_seed(0)
        t = Trainer(Toy(dropout=0.2), cfg, out, loader(), loss_fn, validator(data), save_state)
        return t, t.fit(resume=resume)

    full, _ = run(tmp_path / "full")
    with pytest.raises(Crash):  # during update 13 (batches 25-26): the latest checkpoint is step 10, epoch 2, batch 4
        run(tmp_path / "cut", crash_at=25)
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints").name == "ckpt-00000010"
    assert json.loads((latest_checkpoint(tmp_path / "cut" / "checkpoints") / "meta.json").read_text())[
        "batches_in_epoch"] == 4
    resumed, result = run(tmp_path / "cut", resume=True)
    assert result.steps == 14 and result.epochs == 3
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    log_full, log_cut = read_log(tmp_path / "full"), read_log(tmp_path / "cut")
    assert [r["step"] for r in log_full] == [r["step"] for r in log_cut]
    assert [r["loss"] for r in log_full] == [r["loss"] for r in log_cut]


def test_a_version_1_trainer_state_resumes_exactly_and_another_version_is_refused(tmp_path):
    """Format version 1 (rank 0's RNG states under "rng" / "epoch_rng", no "rank_rng" in a single process) is read
    as it was written; a trainer state of an unknown version is refused in one line."""
    data = regression_data(128)  # 8 shuffled batches per epoch: the cut at step 6 is mid-epoch
    cfg = TrainConfig(max_steps=8, valid_every=3, lr=1e-2, warmup_steps=2)

    def run(out, config, resume=False):
        torch.manual_seed(0)
        t = Trainer(Toy(dropout=0.2), config, out, DataLoader(data, batch_size=16, shuffle=True), mse, None,
                    save_state)
        return t, t.fit(resume=resume)

    full, _ = run(tmp_path / "full", cfg)
    run(tmp_path / "cut", dataclasses.replace(cfg, max_steps=6, schedule_steps=8))
    state_file = latest_checkpoint(tmp_path / "cut" / "checkpoints") / "trainer_state.pt"
    state = torch.load(state_file, weights_only=True)
    assert state["version"] == 2 and len(state["rank_rng"]) == 1 and state["batches_in_epoch"] == 6
    (rank0,) = state.pop("rank_rng")
    torch.save(state | {"version": 1, "rng": rank0["rng"], "epoch_rng": rank0["epoch_rng"]}, state_file)
    resumed, result = run(tmp_path / "cut", cfg, resume=True)
    assert result.steps == 8
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k

    state_file = latest_checkpoint(tmp_path / "cut" / "checkpoints") / "trainer_state.pt"
    torch.save(torch.load(state_file, weights_only=True) | {"version": 3}, state_file)
    with pytest.raises(ToolkitError, match="trainer_state.pt: trainer state format version 3") as e:
        run(tmp_path / "cut", dataclasses.replace(cfg, max_steps=10), resume=True)
    assert "\n" not in str(e.value)


def test_output_folder_guards(tmp_path):
    loader = DataLoader(regression_data(32), batch_size=16)
    with pytest.raises(ToolkitError, match="no checkpoint to resume") as e:
        trainer(tmp_path, TrainConfig(max_steps=2), loader).fit(resume=True)
    assert "\n" not in str(e.value)
    trainer(tmp_path, TrainConfig(max_steps=2), loader).fit()
    with pytest.raises(ToolkitError, match="--resume") as e:
        trainer(tmp_path, TrainConfig(max_steps=4), loader).fit()
    assert "\n" not in str(e.value)


def test_average_checkpoints_is_the_mean(tmp_path):
    a = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    b = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    a[1].num_batches_tracked.fill_(3)
    b[1].num_batches_tracked.fill_(7)
    b[1].running_mean.normal_()
    pa = save_checkpoint(tmp_path, 1, a.state_dict(), {"step": 1}, {})
    pb = save_checkpoint(tmp_path, 2, b.state_dict(), {"step": 2}, {})
    avg = average_checkpoints([pa, pb])
    for k, va in a.state_dict().items():
        vb = b.state_dict()[k]
        if va.is_floating_point():
            torch.testing.assert_close(avg[k], (va + vb) / 2)
        else:
            assert torch.equal(avg[k], vb) and avg[k].dtype == torch.int64  # integer buffers: from the last


def test_final_model_averages_the_last_checkpoints(tmp_path):
    data = regression_data(64)
    cfg = TrainConfig(max_steps=6, valid_every=3, keep_last=2, average_last=2, lr=1e-2)
    t = trainer(tmp_path, cfg, DataLoader(data, batch_size=16), validate_fn=validator(data))
    result = t.fit()
    assert result.averaged == ["ckpt-00000003", "ckpt-00000006"]
    s3, s6 = (load_file(str(tmp_path / "checkpoints" / n / "model.safetensors")) for n in result.averaged)
    final = load_file(str(result.final_path / "model.safetensors"))
    for k in final:
        torch.testing.assert_close(final[k], (s3[k] + s6[k]) / 2)
    t.model.eval()
    with torch.no_grad():
        assert result.final_metrics["loss"] == pytest.approx(validator(data)(t.model)["loss"])
    assert result.final_metrics["loss"] != pytest.approx(float(read_log(tmp_path)[-1]["valid_loss"]))


def test_non_finite_and_empty_batches_are_skipped_and_counted(tmp_path):
    g = torch.Generator().manual_seed(0)
    batches = [{"x": torch.randn(4, DIM, generator=g), "y": torch.randn(4, 1, generator=g), "kind": "ok"}
               for _ in range(8)]
    batches[2]["kind"] = "nan_loss"
    batches[5]["kind"] = "nan_grad"
    batches.insert(4, None)  # a loader yields None when every item of a batch was bad

    def loss_fn(model, batch):
        pred = model(batch["x"])
        loss = F.mse_loss(pred, batch["y"])
        if batch["kind"] == "nan_loss":
            loss = loss * float("nan")
        if batch["kind"] == "nan_grad":  # finite loss, NaN gradient: sqrt'(0) * 0
            loss = loss + torch.sqrt(pred.sum() * 0.0)
        return {"loss": loss}

    result = trainer(tmp_path, TrainConfig(max_epochs=2, valid_every=100, warmup_steps=1), batches,
                     loss_fn=loss_fn).fit()
    assert (result.bad_batches, result.empty_batches, result.steps, result.epochs) == (4, 2, 12, 2)
    assert all(math.isfinite(float(r["loss"])) for r in read_log(tmp_path))  # skipped losses are not logged
    assert all(torch.isfinite(p).all() for p in load_file(str(result.final_path / "model.safetensors")).values())

    bad = [{"x": b["x"], "y": b["y"], "kind": "nan_loss"} for b in batches if b is not None]
    with pytest.raises(ToolkitError, match="5 non-finite losses or gradients in a row") as e:
        trainer(tmp_path / "bad", TrainConfig(max_steps=10, max_bad_steps=5), bad, loss_fn=loss_fn).fit()
    assert "\n" not in str(e.value)


class Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_trainer_state_is_refused(tmp_path):
    live = tmp_path / "payload_is_live"  # the same payload, loaded without weights_only, does run
    torch.save({"step": Payload(live)}, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)
    assert live.exists()

    out = tmp_path / "run"
    loader = DataLoader(regression_data(32), batch_size=16)
    trainer(out, TrainConfig(max_steps=2), loader).fit()
    marker = tmp_path / "pwned"
    state_file = latest_checkpoint(out / "checkpoints") / "trainer_state.pt"
    for write in (lambda: torch.save({"step": Payload(marker)}, state_file),
                  lambda: state_file.write_bytes(pickle.dumps({"step": Payload(marker)}, protocol=2))):
        write()
        with pytest.raises(ToolkitError, match="refused") as e:
            trainer(out, TrainConfig(max_steps=4), loader).fit(resume=True)
        assert "\n" not in str(e.value) and "trainer_state.pt" in str(e.value)
        assert not marker.exists()


def test_bf16_autocast_on_cpu(tmp_path):
    dtypes = []

    def loss_fn(model, batch):
        x, y = batch
        pred = model(x)
        dtypes.append(pred.dtype)
        return {"loss": F.mse_loss(pred.float(), y)}

    data = regression_data(128)
    for amp in ("bf16", "none"):
        dtypes.clear()
        cfg = TrainConfig(max_steps=24, amp=amp, lr=1e-2, warmup_steps=2, valid_every=100, log_every=4)
        t = trainer(tmp_path / amp, cfg, DataLoader(data, batch_size=16, shuffle=True), loss_fn=loss_fn)
        result = t.fit()
        assert set(dtypes) == {torch.bfloat16 if amp == "bf16" else torch.float32}
        assert all(p.dtype == torch.float32 for p in t.model.parameters())
        losses = [float(r["loss"]) for r in read_log(tmp_path / amp) if r["loss"]]
        assert result.bad_batches == 0 and math.isfinite(losses[-1]) and losses[-1] < losses[0]


def test_encoder_decoder_with_ctc_in_bf16(tmp_path):
    """The real model through the loop: dict batches, EncoderDecoder.loss's extra entries logged, bf16 autocast."""
    torch.manual_seed(0)
    model = build_model({
        "vocab_size": 12, "d_model": 32, "ctc": True,
        "encoder": {"name": "conformer", "num_layers": 1, "num_heads": 2, "ffn_dim": 64, "n_mels": 20},
        "decoder": {"num_layers": 1, "num_heads": 2, "ffn_dim": 64, "max_len": 16},
    })
    g = torch.Generator().manual_seed(0)
    batches = [{"x": torch.randn(2, 4000, generator=g), "lengths": torch.tensor([4000, 3000]),
                "targets": torch.randint(4, 12, (2, 4), generator=g), "target_lengths": torch.tensor([4, 3])}
               for _ in range(2)]

    def loss_fn(model, b):
        return model.loss(b["x"], b["lengths"], b["targets"], b["target_lengths"], ctc_weight=0.3)

    cfg = TrainConfig(max_steps=10, amp="bf16", lr=3e-3, warmup_steps=2, valid_every=5, log_every=2)
    result = Trainer(model, cfg, tmp_path, batches, loss_fn, None, save_state).fit()
    rows = read_log(tmp_path)
    assert {"att_loss", "ctc_loss"} <= set(rows[0]) and result.bad_batches == 0
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert result.best_path is None and names(tmp_path / "checkpoints") == ["ckpt-00000005", "ckpt-00000010"]
