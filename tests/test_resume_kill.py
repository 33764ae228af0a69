"""Faults a training run must survive: a SIGKILL mid-epoch (then `--resume` continues exactly), a process killed
at any point of a checkpoint write, and pickles planted where a checkpoint or a bundle keeps its data."""

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from toolkit.bundle import load_model, save_model
from toolkit.synth.shapes import ShapesConfig, make_shapes_corpus
from toolkit.errors import ToolkitError
from toolkit.model import build_model
from toolkit.text import train_tokenizer
from toolkit.train import TrainConfig, Trainer
from toolkit.train import checkpoint as ckpt
from toolkit.train.checkpoint import latest_checkpoint, list_checkpoints, read_meta

ROOT = Path(__file__).resolve().parents[1]

# `toolkit train`, deterministic: the same run gives the same numbers, bit for bit (CPU, one thread, no workers)
DETERMINISTIC_CLI = ("import sys, torch; torch.use_deterministic_algorithms(True); torch.set_num_threads(1); "
                     "from toolkit.cli import main; sys.exit(main(sys.argv[1:]))")
TINY_CAPTIONER = [
    "model.d_model=32", "model.encoder.backbone=test_resnet", "model.decoder.num_layers=1",
    "model.decoder.num_heads=2", "model.decoder.ffn_dim=64", "data.image_size=32", "data.batch_size=8",
    "data.num_workers=0", "train.amp=none", "train.max_minutes=null", "train.max_steps=30", "train.valid_every=5",
    "train.log_every=1", "train.warmup_steps=2", "train.keep_last=10",
]  # dropout stays on (0.1): the resumed run must also restore the RNG streams
KILL_AFTER_ROW = 13  # 12 batches per epoch: killed in epoch 1, after the checkpoint at update 10 (epoch 0)


def read_log(out: Path) -> list[dict[str, str]]:
    with open(out / "train_log.csv", newline="") as f:
        return list(csv.DictReader(f))


def train_command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", DETERMINISTIC_CLI, "train", str(ROOT / "recipes/shapes_caption/conf/quick.yaml"),
            "-o", str(out), f"data.train={data}/captions_train.json", f"data.valid={data}/captions_val.json",
            *TINY_CAPTIONER]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def run_and_kill(cmd: list[str], out: Path, after_row: int, log_file: Path) -> None:
    """Start `cmd`, SIGKILL it as soon as train_log.csv holds the row of update `after_row`."""
    with open(log_file, "w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 300
        row = re.compile(rf"^{after_row},.*\n", re.M)
        try:
            while True:
                assert proc.poll() is None, f"the run ended before it could be killed:\n{log_file.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "the run did not reach the row in time"
                log = out / "train_log.csv"
                if log.is_file() and row.search(log.read_text()):
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.005)
        finally:
            if proc.poll() is None and proc.returncode is None:
                proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_run(tmp_path):
    data = tmp_path / "shapes"
    make_shapes_corpus(data, ShapesConfig(train=32, val=4, test_iid=2, test_heldout=2, image_size=32), progress=False)
    full, cut = tmp_path / "full", tmp_path / "cut"
    run(train_command(data, full))

    run_and_kill(train_command(data, cut), cut, KILL_AFTER_ROW, tmp_path / "killed.txt")
    assert not (cut / "final").exists()
    latest = latest_checkpoint(cut / "checkpoints")
    meta = read_meta(latest)
    assert meta["step"] < KILL_AFTER_ROW and meta["batches_in_epoch"] > 0  # mid-epoch, behind the log
    assert int(read_log(cut)[-1]["step"]) >= KILL_AFTER_ROW  # rows past the checkpoint, to be trained again

    r = run([*train_command(data, cut), "--resume"])
    assert f"resumed from {latest}" in r.stdout + r.stderr and "trained 30 steps" in r.stdout

    rows_full, rows_cut = read_log(full), read_log(cut)
    assert [r["step"] for r in rows_cut] == [r["step"] for r in rows_full] == [str(s) for s in range(1, 31)]
    traced = [k for k in rows_full[0] if k not in ("items_per_s", "elapsed_s")]  # all but the clock
    assert {"loss", "lr", "grad_norm", "valid_exact_match"} <= set(traced)
    for a, b in zip(rows_full, rows_cut):
        for k in traced:
            if a[k] != "":
                assert float(b[k]) == pytest.approx(float(a[k]), rel=1e-6, abs=1e-9), (a["step"], k)
            else:
                assert b[k] == "", (a["step"], k)
    final_full = load_file(str(full / "final/model.safetensors"))
    final_cut = load_file(str(cut / "final/model.safetensors"))
    assert final_full.keys() == final_cut.keys()
    diff = max(float((final_full[k].float() - final_cut[k].float()).abs().max()) for k in final_full)
    print(f"killed after update {KILL_AFTER_ROW}, resumed from {latest.name}: max final weight difference {diff:.3g}")
    print("step  loss (never killed)  loss (killed + resumed)")  # shown with pytest -s
    for a, b in zip(rows_full, rows_cut):
        print(f"{a['step']:>4}  {float(a['loss']):>19.6f}  {float(b['loss']):>23.6f}")
    assert diff <= 1e-6


# ------------------------------------------------------------------------------------ killed while checkpointing


def _kill_before_operation(k: int) -> None:
    """In a forked child: let the first k - 1 file-system operations of a checkpoint write and prune run, then
    die at once (os._exit: no exception handler, no cleanup), like a SIGKILL there."""
    count = [0]

    def counted(fn):
        def wrapper(*args, **kwargs):
            count[0] += 1
            if count[0] == k:
                os._exit(9)
            return fn(*args, **kwargs)
        return wrapper

    for module, name in ((ckpt.os, "replace"), (ckpt.os, "chmod"), (ckpt.os, "fsync"), (ckpt.os, "mkdir"),
                         (ckpt.shutil, "rmtree"), (ckpt, "save_file"), (ckpt.torch, "save"), (ckpt, "_fsync_dir")):
        setattr(module, name, counted(getattr(module, name)))
    ckpt.open = counted(open)  # the module's `open` (trainer state and meta.json), shadowing the builtin


def test_a_checkpoint_write_killed_at_any_point_leaves_the_previous_one(tmp_path):
    """Kill the write of checkpoint 2 (and the pruning of checkpoint 1 that follows, as the trainer does) before
    each of its file-system operations in turn: a complete newest checkpoint is always there, 1 or 2, and holds
    exactly what was saved; the hidden leftovers are removed by remove_partial."""
    torch.manual_seed(0)
    w1, w2 = nn.Linear(4, 3).state_dict(), nn.Linear(4, 3).state_dict()
    pristine = tmp_path / "pristine"
    ckpt.save_checkpoint(pristine, 1, w1, {"step": 1, "optimizer": {"lr": 0.1}}, {"step": 1})
    outcomes = []
    for k in range(1, 100):
        root = tmp_path / f"k{k}"
        shutil.copytree(pristine, root)
        pid = os.fork()
        if pid == 0:  # the child writes, and dies before operation k
            try:
                _kill_before_operation(k)
                ckpt.save_checkpoint(root, 2, w2, {"step": 2, "optimizer": {"lr": 0.2}}, {"step": 2})
                ckpt.prune(root, keep_last=1)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        killed = os.waitstatus_to_exitcode(status) == 9
        steps = [ckpt.checkpoint_step(p) for p in list_checkpoints(root)]
        assert steps in ([1], [1, 2], [2]), (k, steps, os.listdir(root))
        for path in list_checkpoints(root):
            step = ckpt.checkpoint_step(path)
            expected = w1 if step == 1 else w2
            saved = ckpt.load_model_state(path)
            assert all(torch.equal(saved[name], expected[name]) for name in expected), (k, step)
            assert ckpt.load_trainer_state(path)["optimizer"]["lr"] == step / 10 and read_meta(path)["step"] == step
        ckpt.remove_partial(root)
        assert all(name.startswith("ckpt-") for name in os.listdir(root)), (k, os.listdir(root))
        outcomes.append(steps[-1])
        if not killed:  # k is past the last operation: the write and the prune completed
            assert steps == [2]
            break
    else:
        pytest.fail("the checkpoint write never completed")
    assert len(outcomes) > 10 and outcomes[0] == 1 and outcomes[-1] == 2  # many kill points, both outcomes


# ------------------------------------------------------------------------------------ planted pickles


class Payload:
    """Unpickling this creates a file: what a malicious file would do (run code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def tiny_run(out: Path, steps: int = 2) -> Trainer:
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    data = TensorDataset(x, x.sum(1, keepdim=True))

    def mse(model, batch):
        return {"loss": F.mse_loss(model(batch[0]), batch[1])}

    def save(model, path, info):
        path.mkdir(parents=True, exist_ok=True)

    return Trainer(nn.Linear(4, 1), TrainConfig(max_steps=steps, warmup_steps=1), out,
                   DataLoader(data, batch_size=16), mse, None, save)


def test_planted_pickles_are_refused_and_run_no_code(tmp_path):
    """A payload inside the optimizer state of trainer_state.pt, a pickle in place of a checkpoint's or a bundle's
    model.safetensors: refused in one line, and the payload never runs (it would create a file)."""
    probe, live = tmp_path / "probe.pt", tmp_path / "payload_is_live"
    torch.save({"w": Payload(live)}, probe)
    torch.load(probe, weights_only=False)  # the payload is live: loading it the unsafe way runs it
    assert live.exists()
    marker = tmp_path / "pwned"

    out = tmp_path / "run"
    tiny_run(out).fit()
    latest = latest_checkpoint(out / "checkpoints")
    state = torch.load(latest / "trainer_state.pt", weights_only=True)
    assert state["optimizer"]["state"], "AdamW moments expected"
    state["optimizer"]["state"][0]["exp_avg"] = Payload(marker)  # deep in the optimizer state
    torch.save(state, latest / "trainer_state.pt")
    with pytest.raises(ToolkitError, match="trainer_state.pt: refused") as e:
        tiny_run(out, steps=4).fit(resume=True)
    assert "\n" not in str(e.value) and not marker.exists()

    out = tmp_path / "run2"
    tiny_run(out).fit()
    latest = latest_checkpoint(out / "checkpoints")
    torch.save({"weight": Payload(marker)}, latest / "model.safetensors")  # a pickle named like the weights
    with pytest.raises(ToolkitError, match="model.safetensors: not a readable safetensors file") as e:
        tiny_run(out, steps=4).fit(resume=True)
    assert "\n" not in str(e.value) and not marker.exists()

    tokenizer = train_tokenizer("char", ["abc"])
    model = build_model({"vocab_size": tokenizer.vocab_size, "d_model": 16,
                         "encoder": {"name": "conformer", "num_layers": 1, "num_heads": 2, "ffn_dim": 16,
                                     "n_mels": 8},
                         "decoder": {"num_layers": 1, "num_heads": 2, "ffn_dim": 16, "max_len": 8}})
    bundle = save_model(tmp_path / "bundle", model, tokenizer)
    torch.save({"weight": Payload(marker)}, bundle / "model.safetensors")
    config = json.loads((bundle / "config.json").read_text())  # its checksum made to match: only the file
    config["files"]["model.safetensors"] = hashlib.sha256((bundle / "model.safetensors").read_bytes()).hexdigest()
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(ToolkitError, match="model.safetensors") as e:  # format can refuse it now
        load_model(bundle)
    assert "\n" not in str(e.value) and not marker.exists()
