"""Data-parallel training: real torchrun launches of 2 CPU processes (gloo) against one process, and the samplers
that shard the data between ranks.

The launches run `WORKER` (a tiny regressor trained by `toolkit.train.Trainer`), either alone (a world of one) or as
two ranks under `python -m torch.distributed.run`. With a per-item mean loss and no batch-dependent layers, two
ranks with batch B and one process with batch 2B see the same global batches (the same seeded permutation, dealt
out rank by rank) and take the same updates, up to float summation order.
"""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from toolkit.data.captions import CaptionRecord
from toolkit.data.caption_dataset import CaptionDataset, make_caption_loader
from toolkit.data.speech import SpeechRecord
from toolkit.data.speech_dataset import SpeechDataset, make_speech_loader
from toolkit.model import build_model
from toolkit.text import train_tokenizer
from toolkit.train.checkpoint import latest_checkpoint, load_trainer_state
from toolkit.train.distributed import World, join_process_group, unused_parameters

LAUNCH_TIMEOUT_S = 240  # a hung rank fails the test instead of the CI job

WORKER = r'''
"""A tiny regressor trained by toolkit's Trainer: alone, or as one rank of a torchrun job."""
import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from toolkit.train import TrainConfig, Trainer
from toolkit.train.distributed import join_process_group

ap = argparse.ArgumentParser()
ap.add_argument("out", type=Path)
ap.add_argument("--batch-size", type=int, required=True)
ap.add_argument("--steps", type=int, required=True)
ap.add_argument("--resume", action="store_true")
ap.add_argument("--faults", action="store_true", help="rank 0 draws one empty batch, rank 1 one with a NaN loss")
ap.add_argument("--uneven", action="store_true", help="rank 1 has one batch more per epoch than rank 0")
ap.add_argument("--optimizer", default="adamw", choices=["adamw", "muon"])
args = ap.parse_args()

no_sync_calls = []
plain_no_sync = DistributedDataParallel.no_sync


def counted_no_sync(self):
    no_sync_calls.append(1)
    return plain_no_sync(self)


DistributedDataParallel.no_sync = counted_no_sync


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.Tanh(), nn.Linear(32, 1))
        self.spare_head = nn.Linear(32, 4)  # trainable, never used: DDP has to look for unused parameters

    def forward(self, x):
        return self.body(x)

    def output_layers(self):
        return [self.body[3]]  # kept on AdamW by optimizer: muon


class Faulty:
    """The loader, with one empty (None) batch on rank 0 and one NaN batch on rank 1 in the first epoch, or one
    extra batch on rank 1."""

    def __init__(self, loader, rank):
        self.loader, self.sampler, self.rank, self.drawn = loader, loader.sampler, rank, 0

    def __len__(self):
        return len(self.loader) + (args.uneven and self.rank == 1)

    def __iter__(self):
        for batch in self.loader:
            self.drawn += 1
            if args.faults and self.rank == 0 and self.drawn == 3:
                yield None
            elif args.faults and self.rank == 1 and self.drawn == 5:
                yield [batch[0] * float("nan"), batch[1]]
            else:
                yield batch


def mse(model, batch):
    x, y = batch
    return {"loss": F.mse_loss(model(x), y)}


def save_state(model, path, info):
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))


g = torch.Generator().manual_seed(0)
x = torch.randn(64, 8, generator=g)
data = TensorDataset(x, torch.tanh(x @ torch.randn(8, 1, generator=g)))

with join_process_group() as world:
    torch.manual_seed(0)
    model = Regressor()
    sampler = DistributedSampler(data, num_replicas=world.size, rank=world.rank, shuffle=True, seed=0)
    loader = Faulty(DataLoader(data, batch_size=args.batch_size, sampler=sampler), world.rank)
    cfg = TrainConfig(max_steps=args.steps, schedule_steps=12, lr=1e-2, warmup_steps=2, accum_steps=2,
                      grad_clip=100.0, valid_every=3, log_every=1, keep_last=10,
                      optimizer=args.optimizer)
    validate = lambda m: {"loss": F.mse_loss(m(x), data.tensors[1]).item()}
    trainer = Trainer(model, cfg, args.out, loader, mse, validate, save_state, device=world.device)
    result = trainer.fit(resume=args.resume)
    report = {"rank": world.rank, "size": world.size, "steps": result.steps, "bad": result.bad_batches,
              "empty": result.empty_batches, "no_sync_calls": len(no_sync_calls),
              "find_unused": trainer.find_unused_parameters,
              "best_step": result.best_step, "items_per_second": result.items_per_second}
    (args.out / f"rank{world.rank}.json").write_text(json.dumps(report))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: Path, out: Path, *args: str, processes: int = 1, ok: bool = True) -> subprocess.CompletedProcess:
    """Run the worker alone (processes=1: no torchrun, a world of one) or as `processes` ranks under torchrun."""
    if processes == 1:
        cmd = [sys.executable, str(script)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("WORLD_SIZE", None)
    r = subprocess.run([*cmd, str(out), *args], capture_output=True, text=True, env=env, timeout=LAUNCH_TIMEOUT_S)
    assert (r.returncode == 0) == ok, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def losses(out: Path) -> list[float]:
    with open(out / "train_log.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]


def ranks(out: Path) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process with batch 8 for 9 updates, and two ranks with batch 4 for 6 updates (4 updates per epoch:
    both cross an epoch boundary); checkpoints every 3 updates."""
    root = tmp_path_factory.mktemp("ddp")
    script = root / "worker.py"
    script.write_text(WORKER)
    launch(script, root / "single", "--batch-size", "8", "--steps", "9")
    launch(script, root / "ddp", "--batch-size", "4", "--steps", "6", processes=2)
    return root, script


def test_two_ranks_with_batch_b_match_one_process_with_batch_2b(runs):
    root, _ = runs
    single_at_6 = weights(root / "single/checkpoints/ckpt-00000006")
    diff = max_difference(weights(root / "ddp/final"), single_at_6)
    print(f"max weight difference, 2 ranks x batch 4 vs 1 process x batch 8 after 6 updates: {diff:.3g}")
    assert diff < 1e-5
    # the logged loss is the mean over both ranks' batches: the same trace as the single process
    assert losses(root / "ddp") == pytest.approx(losses(root / "single")[:6], rel=1e-4)
    # the spare head got no gradient: untouched (no weight decay from zero-filled gradients either)
    spare = "spare_head.weight"
    assert torch.equal(weights(root / "ddp/final")[spare], weights(root / "single/final")[spare])

    rank0, rank1 = ranks(root / "ddp")
    for r in (rank0, rank1):
        assert r["size"] == 2 and r["steps"] == 6 and r["find_unused"] is True
        assert r["no_sync_calls"] == 6  # accumulation: the first of the 2 batches of each update skips the all-reduce
        assert r["best_step"] == rank0["best_step"] and r["items_per_second"] > 0
    assert json.loads((root / "single/rank0.json").read_text())["find_unused"] is None  # no DDP for one process

    # the checkpoint holds the bare model's weights and every rank's RNG states
    ckpt = latest_checkpoint(root / "ddp/checkpoints")
    assert ckpt.name == "ckpt-00000006"
    assert weights(ckpt).keys() == single_at_6.keys() and not any(k.startswith("module.") for k in weights(ckpt))
    state = load_trainer_state(ckpt)
    assert state["world_size"] == 2 and len(state["rank_rng"]) == 2 and state["batches_in_epoch"] == 4
    assert not torch.equal(state["rank_rng"][0]["rng"]["torch"], state["rank_rng"][1]["rng"]["torch"])
    assert sorted(os.listdir(root / "ddp")) == ["best", "checkpoints", "final", "loss_curve.png", "rank0.json",
                                                "rank1.json", "train_log.csv"]


def test_resume_on_two_ranks_or_on_one_process(runs, tmp_path):
    """The 2-rank checkpoint at update 6 resumes on 2 ranks, or on 1 process with batch 8, to the weights of the
    uninterrupted single process at update 9. Both resume copies of the 2-rank run in this test's own folder, so
    the shared runs stay as `runs` made them, whatever order the tests run in."""
    root, script = runs
    for name in ("ddp_then_two", "ddp_then_one"):
        shutil.copytree(root / "ddp", tmp_path / name)
    assert latest_checkpoint(tmp_path / "ddp_then_two/checkpoints").name == "ckpt-00000006"
    launch(script, tmp_path / "ddp_then_two", "--batch-size", "4", "--steps", "9", "--resume", processes=2)
    diff = max_difference(weights(tmp_path / "ddp_then_two/final"), weights(root / "single/final"))
    print(f"max weight difference after resuming on 2 ranks: {diff:.3g}")
    assert diff < 1e-5
    assert [r["steps"] for r in ranks(tmp_path / "ddp_then_two")] == [9, 9]
    assert losses(tmp_path / "ddp_then_two") == pytest.approx(losses(root / "single"), rel=1e-4)

    r = launch(script, tmp_path / "ddp_then_one", "--batch-size", "8", "--steps", "9", "--resume")
    assert "written by 2 processes, this run has 1" in r.stderr + r.stdout
    diff = max_difference(weights(tmp_path / "ddp_then_one/final"), weights(root / "single/final"))
    print(f"max weight difference after resuming on 1 process: {diff:.3g}")
    assert diff < 1e-5
    assert latest_checkpoint(root / "ddp/checkpoints").name == "ckpt-00000006"  # the shared run is untouched


def test_muon_on_two_ranks_with_batch_b_matches_one_process_with_batch_2b(tmp_path):
    """optimizer: muon (Muon on the hidden matrices, AdamW on the rest) under DDP takes the single process's
    updates too. Muon orthogonalises in bfloat16, where a float summation difference may round apart, so the
    tolerance is looser than AdamW's (1e-5); it is still far below the gap between the Muon and the AdamW runs."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    for name, batch, processes in (("single", "8", 1), ("ddp", "4", 2)):
        launch(script, tmp_path / name, "--batch-size", batch, "--steps", "6", "--optimizer", "muon",
               processes=processes)
    launch(script, tmp_path / "adamw", "--batch-size", "8", "--steps", "6")
    single = weights(tmp_path / "single/final")
    diff = max_difference(weights(tmp_path / "ddp/final"), single)
    gap = max_difference(weights(tmp_path / "adamw/final"), single)
    print(f"max weight difference, muon 2 ranks x batch 4 vs 1 process x batch 8: {diff:.3g} (vs adamw {gap:.3g})")
    assert diff < 1e-4 and gap > 0.05
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "single"), rel=1e-4)
    assert [r["steps"] for r in ranks(tmp_path / "ddp")] == [6, 6]
    # the spare head (on Muon, never used) got no gradient on any rank: untouched
    assert torch.equal(weights(tmp_path / "ddp/final")["spare_head.weight"], single["spare_head.weight"])


def test_ranks_skip_empty_and_non_finite_batches_together(tmp_path):
    """Rank 0's empty batch and rank 1's NaN loss are skipped on both ranks (no rank waits for a missing
    all-reduce), and counted alike."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    r = launch(script, tmp_path / "out", "--batch-size", "4", "--steps", "4", "--faults", processes=2)
    for rank in ranks(tmp_path / "out"):
        assert (rank["steps"], rank["bad"], rank["empty"]) == (4, 1, 1), rank
    assert r.stdout.count("skipped: non-finite loss on another rank at step") == 1  # rank 0 alone reports


def test_ranks_with_different_batch_counts_are_refused(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    r = launch(script, tmp_path / "out", "--batch-size", "4", "--steps", "4", "--uneven", processes=2, ok=False)
    assert "the training loader gives the ranks 8, 9 batches per epoch" in r.stderr


# ------------------------------------------------------------------------------------------- the samplers


def shards(loader_of_rank, replicas: int, epoch: int) -> list[list[list[int]]]:
    """Every rank's batches (lists of dataset indices) in `epoch`."""
    out = []
    for rank in range(replicas):
        loader = loader_of_rank(rank)
        for obj in (loader.sampler, loader.batch_sampler):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        out.append([list(b) for b in loader.batch_sampler])
    return out


@pytest.mark.parametrize("replicas", [2, 3])
def test_speech_loader_shards_are_disjoint_complete_equal_and_reshuffled(replicas):
    durations = [0.5 + (7 * i % 23) / 3 for i in range(57)]
    records = [SpeechRecord(f"u{i}", f"/nonexistent/u{i}.wav", "a b", duration=d) for i, d in enumerate(durations)]
    dataset = SpeechDataset(records)

    def loader_of(rank):
        return make_speech_loader(dataset, None, 12.0, train=True, seed=5, num_replicas=replicas, rank=rank)

    epochs = [shards(loader_of, replicas, e) for e in (0, 1)]
    for per_rank in epochs:
        assert len({len(batches) for batches in per_rank}) == 1  # the same number of batches on every rank
        assert len(per_rank[0]) == len(loader_of(0))
        flat = [i for batches in per_rank for b in batches for i in b]
        assert sorted(flat) == list(range(len(records)))  # disjoint and complete: each utterance once
        assert all(len(b) * max(durations[i] for i in b) <= 12.0 for batches in per_rank for b in batches)
    assert epochs[0] != epochs[1]  # a new order each epoch ...
    assert shards(loader_of, replicas, 1) == epochs[1]  # ... the same on every call for that epoch


@pytest.mark.parametrize("replicas", [2, 3])
def test_caption_loader_shards_are_disjoint_complete_equal_and_reshuffled(replicas):
    records = [CaptionRecord(f"/nonexistent/{i}.png", [f"a {i % 3} shape"], str(i)) for i in range(20)]
    tokenizer = train_tokenizer("word", [c for r in records for c in r.captions])
    dataset = CaptionDataset(records, tokenizer, image_size=8, train=True)

    def loader_of(rank):
        return make_caption_loader(dataset, 3, train=True, seed=5, num_replicas=replicas, rank=rank)

    epochs = [shards(loader_of, replicas, e) for e in (0, 1)]
    per_rank_items = -(-len(dataset) // replicas)
    for per_rank in epochs:
        assert {len(batches) for batches in per_rank} == {-(-per_rank_items // 3)}
        flat = [i for batches in per_rank for b in batches for i in b]
        assert len(flat) == per_rank_items * replicas and set(flat) == set(range(len(dataset)))
        assert len(flat) - len(set(flat)) == per_rank_items * replicas - len(dataset)  # only the padding repeats
    assert epochs[0] != epochs[1] and shards(loader_of, replicas, 1) == epochs[1]
    # one process with batch 6 sees, batch for batch, what 2 ranks with batch 3 see together
    if replicas == 2:
        single = shards(lambda rank: make_caption_loader(dataset, 6, train=True, seed=5), 1, 1)[0]
        assert [sorted(b) for b in single] == [sorted(a + b) for a, b in zip(*epochs[1])]


# ------------------------------------------------------------------------------------------- the pieces


def test_without_torchrun_the_world_is_one_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with join_process_group() as world:
        assert (world.rank, world.size, world.is_main, world.distributed) == (0, 1, True, False)
        assert not torch.distributed.is_initialized()
        # the collectives do not communicate in a world of one
        assert world.all_true(True) and not world.all_true(False) and world.any_true(True)
        assert world.max(2.5) == 2.5 and world.sum([1, 2]) == [1.0, 2.0] and world.gather("x") == ["x"]
        assert world.broadcast({"a": 1}) == {"a": 1} and world.main_first(lambda: 1, lambda: 2) == 1
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(Exception, match="RANK is not set"):
        with join_process_group():
            pass
    assert World(rank=1, size=2).is_main is False


def test_unused_parameters_finds_what_ddp_would_wait_for():
    """A CTC head trained with ctc_weight 0 gets no gradient; with 0.3 every parameter does; frozen parameters are
    not listed; the probe leaves the model's buffers (BatchNorm statistics) as they were."""
    torch.manual_seed(0)
    model = build_model({
        "vocab_size": 12, "d_model": 32, "ctc": True,
        "encoder": {"name": "conformer", "num_layers": 1, "num_heads": 2, "ffn_dim": 64, "n_mels": 20,
                    "conv_norm": "batch_norm"},
        "decoder": {"num_layers": 1, "num_heads": 2, "ffn_dim": 64, "max_len": 16},
    }).train()
    x, lengths = torch.randn(2, 4000), torch.tensor([4000, 3000])
    targets, target_lengths = torch.randint(4, 12, (2, 4)), torch.tensor([4, 3])
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def loss(ctc_weight):
        return lambda: model.loss(x, lengths, targets, target_lengths, ctc_weight=ctc_weight)["loss"]

    unused = unused_parameters(model, loss(0.0))
    assert unused and all(name.startswith("ctc_head.") for name in unused)
    assert len(unused) == sum(1 for _ in model.ctc_head.parameters())
    assert unused_parameters(model, loss(0.3)) == []
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())

    model.ctc_head.requires_grad_(False)  # frozen: DDP ignores it, nothing to look for
    assert unused_parameters(model, loss(0.0)) == []
    frozen = nn.Linear(2, 2)
    frozen.weight.requires_grad_(False)
    assert unused_parameters(frozen, lambda: frozen(torch.ones(1, 2)).sum()) == []
