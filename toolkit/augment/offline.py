"""An augmented copy of a speech corpus on disk: every utterance transformed `copies` times by a
`SpeechAugmentConfig`, written as 16-bit WAV files with a JSONL manifest that says what was done to each.

    from toolkit.augment.offline import augment_corpus
    manifest = augment_corpus(read_speech("data/speech/train.jsonl"), "data/speech_aug", SpeechAugmentConfig(),
                              seed=0, copies=2)             # data/speech_aug/train.jsonl + wav/<id>-aug<c>.wav
    toolkit augment data/speech/train.jsonl --out data/speech_aug --copies 2 voice.prob=0.8 noise.snr_db=[0,20]

Copy c of utterance i is drawn from the seed `(seed, c, i)` with the corpus itself as the babble source: exactly
the variant that on-the-fly augmentation (`SpeechDataset(records, augment=config, augment_seed=seed)`) gives in
epoch c, so an offline corpus and an on-the-fly run can be compared utterance for utterance.

Rows: the source row's fields, with `id` "<id>-aug<c>", `audio` the new WAV, `duration` its length, and
`transforms` the plan (`AugmentPlan.to_dict()`); `keep_clean` also lists the source utterances as they are (their
audio paths kept). A transformed utterance whose peak passes full scale is scaled down to 0.999 to fit 16 bits.
Re-runs: `augment_config.json` records the config, seed and copies, and a folder made with others is refused; WAV
files already there are kept (each is written to a temporary name and renamed), so an interrupted run resumes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from toolkit.augment.noise import FileBabble
from toolkit.augment.pipeline import SpeechAugmentConfig, SpeechAugmenter
from toolkit.config import to_dict
from toolkit.data.audio import SAMPLE_RATE, AudioLoadError, load_audio
from toolkit.data.speech import SpeechRecord, write_jsonl_manifest
from toolkit.errors import ToolkitError
from toolkit.files import write_atomic

RECORD = "augment_config.json"
FULL_SCALE = 0.999
_WORKER: dict = {}  # the augmenter and records of a worker process


def _init(records: Sequence[SpeechRecord], config: SpeechAugmentConfig, sample_rate: int) -> None:
    """Build the augmenter once per process (the corpus is its babble source)."""
    import torch

    torch.set_num_threads(1)
    babble = FileBabble([(r.audio, r.offset, r.end) for r in records], sample_rate)
    _WORKER.update(records=records, augmenter=SpeechAugmenter(config, sample_rate, babble), rate=sample_rate)


def _make_one(job: tuple[int, int, int, str]) -> tuple[int, dict | str]:
    """Worker: copy `c` of utterance `i` to `path` (unless it exists); (samples, plan) or (0, the load error)."""
    i, c, seed, path = job
    records, augmenter, rate = _WORKER["records"], _WORKER["augmenter"], _WORKER["rate"]
    record = records[i]
    plan = augmenter.plan((seed, c, i), index=i)
    wav = Path(path)
    if wav.is_file():
        return sf.info(str(wav)).frames, plan.to_dict()
    try:
        x = load_audio(record.audio, rate, record.offset, record.end)
    except AudioLoadError as e:
        return 0, str(e)
    y, _ = augmenter(x, seed=(seed, c, i), index=i)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > FULL_SCALE:
        y = y * (FULL_SCALE / peak)
    tmp = wav.with_name(f".{wav.name}.tmp")
    sf.write(tmp, y, rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, wav)
    return len(y), plan.to_dict()


def _check_record(out_dir: Path, current: dict) -> None:
    """Record `current` in `out_dir/augment_config.json`, or refuse a folder made with another config."""
    path = out_dir / RECORD
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise ToolkitError(f"{path}: not valid JSON; delete the folder and augment again") from None
        if old != current:
            raise ToolkitError(f"{path}: this folder was made with another augmentation config, seed or copies; "
                               "use another folder or delete this one")
    else:
        write_atomic(path, json.dumps(current, indent=1) + "\n")


def augment_corpus(records: Sequence[SpeechRecord], out_dir: str | Path, config: SpeechAugmentConfig,
                   seed: int = 0, copies: int = 1, name: str = "train", keep_clean: bool = False,
                   sample_rate: int = SAMPLE_RATE, workers: int = 1, progress: bool = True) -> Path:
    """Write `copies` augmented copies of every record under `out_dir` (module docstring); returns the manifest
    `out_dir/<name>.jsonl`. Utterances whose audio cannot be loaded are left out and counted in one warning line."""
    from tqdm import tqdm

    if copies < 1:
        raise ToolkitError(f"copies: must be >= 1, got {copies}")
    if seed < 0:
        raise ToolkitError(f"seed: must be >= 0, got {seed}")
    records = list(records)
    if not records:
        raise ToolkitError("no utterances to augment")
    out_dir = Path(out_dir)
    wav_dir = out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    _check_record(out_dir, {"config": to_dict(config), "seed": seed, "copies": copies, "sample_rate": sample_rate})
    jobs = [(i, c, seed, str(wav_dir / f"{r.id}-aug{c}.wav")) for c in range(copies) for i, r in enumerate(records)]
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        _init(records, config, sample_rate)
        results = map(_make_one, jobs)
        pool = None
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method), initializer=_init,
                                   initargs=(records, config, sample_rate))
        results = pool.map(_make_one, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
    try:
        done = list(tqdm(results, total=len(jobs), desc="augment", unit="utt", disable=not progress))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    rows = list(records) if keep_clean else []
    failed = []
    for (i, c, _, path), (frames, plan) in zip(jobs, done):
        if isinstance(plan, str):
            failed.append(plan)
            continue
        r = records[i]
        rows.append(replace(r, id=f"{r.id}-aug{c}", audio=path, duration=round(frames / sample_rate, 4), offset=0.0,
                            end=None, extra={**r.extra, "transforms": plan}))
    if failed:
        import logging

        logging.getLogger("toolkit.augment").warning("%d of %d utterances could not be loaded and were left out "
                                                     "(first: %s)", len(failed), len(jobs), failed[0])
    manifest = out_dir / f"{name}.jsonl"
    write_jsonl_manifest(rows, manifest)
    return manifest
