"""A synthetic speech corpus made offline: real English sentences spoken by many synthetic voices.

    from toolkit.synth.speech import SpeechSynthConfig, make_speech_corpus
    paths = make_speech_corpus("data/synth_speech", SpeechSynthConfig(train=9000, seed=0))  # {split: manifest}

Text: sentences from Debian's fortune files and WordNet's example sentences (`text_corpus`), 3-20 words, written
as `normalize_transcript` gives them (lowercase a-z, apostrophe, space; numbers and symbols spelled out). The
synthesiser speaks exactly those words (with the sentence's pauses kept, `spoken_form`).

Voices (`voices`): espeak-ng English accents x voice variants, plus flite voices (`flite_share` of the
utterances) and, when `mbrola_voices` names some (off by default: MBROLA's voices are in Debian's non-free
section), MBROLA voices (`mbrola_share`), each at a rate from `rates` and a pitch offset from `pitches`; a speaker id
names all four ("espeak:en-gb-scotland+f2:r1.15:p-15"). The flite and MBROLA voices are built from recordings of
real speakers (MBROLA's are diphone databases), so they add speakers that espeak-ng's formant synthesis cannot
imitate.

Splits (`out_dir/<split>.jsonl`, audio in `out_dir/wav/<split>/<id>.wav`, 16 kHz mono PCM16):
    train         training voices, its own sentences (reused with other speakers only if the text runs out)
    valid         training voices, sentences that no other split has
    test_seen     training voices, sentences that no other split has
    test_heldout  held-out voices: accents in `held_out_accents` spoken with variants in `held_out_variants` (and
                  held-out flite and MBROLA voices, e.g. "flite-rms"); training never hears any of those accents or
                  variants (voices that mix a held-out accent with a seen variant, or the reverse, are used nowhere).
                  Sentences that no other split has.
Default held-out: accents en-gb-x-gbclan (Lancaster), en-us-nyc (New York City) and flite's rms voice; variants
m4, f3, klatt2. Training: en-gb, en-us, en-gb-x-rp, en-gb-scotland, en-gb-x-gbcwmd, en-029 x m1 m2 m3 m5 m6 m7 f1 f2
f4 klatt klatt3 Annie edward, and flite's slt, awb, kal16.

Augmentation (`augment`, splits in `augment_splits`, train only by default so the test splits measure voices and
sentences, not noise): speed perturbation, reverberation, additive noise at a random SNR, telephone band; and, when
`augment.voice_prob` > 0 (`toolkit synth speech --voice-shift P`), voices shifted in pitch and formants together, as
if spoken by a larger or smaller speaker. The evaluation splits do not depend on the augmentation settings.

Manifest lines: {"id", "audio" (relative to the manifest's folder), "text", "duration" (s), "speaker", "voice",
"accent", "augment" (the augmentations applied, {} for none)}.

Language-model text (`out_dir/lm_text.txt`, `lm_sentences`): every sentence of the text sources (3-20 words, as
transcripts, one per line) except those of valid, test_seen and test_heldout and those that hold one of them as
consecutive whole words ("do you see what i mean" holds "see what i mean"), compared after scoring normalisation
(`toolkit.text.normalize`) so that no evaluation sentence leaks in another spelling; the training sentences stay.
It is the text-only data an external language model is trained on (as LibriSpeech ships an LM corpus beside its
audio): ~57,000 sentences against the 9,000 spoken in train.

Determinism and re-runs: everything (texts, speakers, augmentation parameters and noise) is drawn from `seed`, and
espeak-ng / flite / MBROLA are deterministic, so the same config gives the same corpus byte for byte, whatever
`workers`. The config is recorded in `out_dir/speech_corpus.json` (a setting added to the toolkit after a corpus
was made counts as its default there); re-running with the same config reuses what is there: a split whose manifest
lists every planned utterance and whose wav files all exist is skipped, and otherwise only the missing wav files are
synthesised (each wav and each manifest is written to a temporary file and renamed, so an interrupted run leaves no
half-written file). A different config for the same folder is refused.

Parallelism: `workers` processes (default `os.cpu_count()`), forked where the platform can (as torch's DataLoader
does; each worker runs torch on one thread), spawned elsewhere (then call `make_speech_corpus` from under
`if __name__ == "__main__":`). `workers=1` synthesises in the calling process.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf

from toolkit.data.audio import SAMPLE_RATE
from toolkit.synth.augment import AugmentConfig, apply_augmentation, sample_augmentation
from toolkit.synth.text_corpus import SOURCES, load_sentences
from toolkit.synth.text_normalize import normalize_transcript, spoken_form
from toolkit.synth.voices import (ESPEAK_ACCENTS, ESPEAK_VARIANTS, FLITE_VOICES, Speaker, Voice, check_voices,
                                       synthesize)
from toolkit.errors import ConfigError, ToolkitError
from toolkit.files import write_atomic
from toolkit.text.normalize import normalize_text

__all__ = ["LM_TEXT", "SPLITS", "SpeechSynthConfig", "Utterance", "lm_sentences", "make_speech_corpus",
           "normalize_transcript", "plan_corpus", "split_voices"]
SPLITS = ("train", "valid", "test_seen", "test_heldout")
EVAL_SPLITS = ("valid", "test_seen", "test_heldout")
LM_TEXT = "lm_text.txt"
FORMAT = 1
PEAK = 0.9  # every utterance is scaled to this peak amplitude


@dataclass
class SpeechSynthConfig:
    """Sizes (utterances per split), text, voices, held-out lists, augmentation and parallelism of the corpus."""

    train: int = 9000
    valid: int = 200
    test_seen: int = 300
    test_heldout: int = 300
    seed: int = 0
    text_sources: tuple[str, ...] = ("fortunes", "wordnet")
    min_words: int = 3
    max_words: int = 20
    accents: tuple[str, ...] = ESPEAK_ACCENTS
    variants: tuple[str, ...] = ESPEAK_VARIANTS
    flite_voices: tuple[str, ...] = FLITE_VOICES  # () for espeak-ng only
    mbrola_voices: tuple[str, ...] = ()  # e.g. MBROLA_VOICES; needs Debian's non-free mbrola-<name> packages
    held_out_accents: tuple[str, ...] = ("en-gb-x-gbclan", "en-us-nyc", "flite-rms")
    held_out_variants: tuple[str, ...] = ("m4", "f3", "klatt2")
    flite_share: float = 0.15  # fraction of a split's utterances spoken by flite (when the split has flite voices)
    mbrola_share: float = 0.2  # the same for MBROLA; espeak-ng speaks the rest
    rates: tuple[float, ...] = (0.85, 1.0, 1.15)
    pitches: tuple[int, ...] = (-15, 0, 15)
    keep_silence: float = 0.15  # seconds of silence at each end (longer cut, shorter zero-padded)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    augment_splits: tuple[str, ...] = ("train",)
    workers: int | None = None  # worker processes; None: os.cpu_count()

    def __post_init__(self) -> None:
        where = "SpeechSynthConfig"
        for split in SPLITS:
            if getattr(self, split) < 0:
                raise ConfigError(f"{where}.{split}: must be >= 0, got {getattr(self, split)}")
        for name in ("text_sources", "augment_splits"):
            known = SOURCES if name == "text_sources" else SPLITS
            bad = [v for v in getattr(self, name) if v not in known]
            if bad:
                raise ConfigError(f"{where}.{name}: unknown {bad[0]!r} (choose from {', '.join(known)})")
        single = [v.accent for v in _single_voices(self)]
        bad = [a for a in self.held_out_accents if a not in self.accents and a not in single]
        if bad:
            raise ConfigError(f"{where}.held_out_accents: {bad[0]!r} is not in accents, flite-<flite_voices> or "
                              "mbrola-<mbrola_voices>")
        bad = [v for v in self.held_out_variants if v not in self.variants]
        if bad:
            raise ConfigError(f"{where}.held_out_variants: {bad[0]!r} is not in variants")
        if not 1 <= self.min_words <= self.max_words:
            raise ConfigError(f"{where}.min_words/max_words: need 1 <= min_words <= max_words")
        if not self.rates or any(r <= 0 for r in self.rates) or not self.pitches:
            raise ConfigError(f"{where}.rates/pitches: need at least one of each, rates > 0")
        for name in ("flite_share", "mbrola_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{where}.{name}: must be in [0, 1], got {getattr(self, name)}")
        if self.flite_share + self.mbrola_share > 1.0:
            raise ConfigError(f"{where}.flite_share + mbrola_share: must be <= 1, got "
                              f"{self.flite_share + self.mbrola_share}")
        train_voices, heldout_voices = split_voices(self)
        if not train_voices:
            raise ConfigError(f"{where}.held_out_accents/held_out_variants: no voice is left for training")
        if self.test_heldout and not heldout_voices:
            raise ConfigError(f"{where}.held_out_accents/held_out_variants: no held-out voice for test_heldout")


@dataclass(frozen=True)
class Utterance:
    """One planned utterance: what is said, by whom, with which augmentation (`seed` drives its random noise)."""

    id: str
    split: str
    text: str
    spoken: str
    speaker: Speaker
    augment: dict
    seed: int


def split_voices(config: SpeechSynthConfig) -> tuple[list[Voice], list[Voice]]:
    """(training voices, held-out voices): training voices have neither a held-out accent nor a held-out variant;
    held-out voices have both (a held-out flite or MBROLA voice counts as both)."""
    accents, variants = set(config.held_out_accents), set(config.held_out_variants)
    espeak = [Voice("espeak", a, v) for a in config.accents for v in config.variants]
    single = _single_voices(config)
    train = [v for v in espeak if v.accent not in accents and v.variant not in variants]
    train += [v for v in single if v.accent not in accents]
    heldout = [v for v in espeak if v.accent in accents and v.variant in variants]
    heldout += [v for v in single if v.accent in accents]
    return train, heldout


def _single_voices(config: SpeechSynthConfig) -> list[Voice]:
    """The flite and MBROLA voices of `config`: each is its own accent."""
    return ([Voice.single("flite", name) for name in config.flite_voices]
            + [Voice.single("mbrola", name) for name in config.mbrola_voices])


def _engine_draw(voices: list[Voice], config: SpeechSynthConfig) -> tuple[dict[str, list[Voice]], dict[str, float]]:
    """`voices` by engine, and each engine's share: flite's and MBROLA's from `config`, espeak-ng the rest."""
    by_engine: dict[str, list[Voice]] = {}
    for engine in ("flite", "mbrola", "espeak"):  # the order in which `_pick_voice` walks the shares
        group = [v for v in voices if v.engine == engine]
        if group:
            by_engine[engine] = group
    shares = {"flite": config.flite_share, "mbrola": config.mbrola_share}
    shares["espeak"] = 1.0 - sum(shares[e] for e in by_engine if e != "espeak")
    return by_engine, shares


def _pick_voice(rng: random.Random, by_engine: dict[str, list[Voice]], shares: dict[str, float]) -> Voice:
    """A voice: the engine first, by `shares` renormalised over the engines of `by_engine` (no draw when it has
    one), then a voice of that engine."""
    engines = list(by_engine)
    engine = engines[0]
    if len(engines) > 1:
        u = rng.random() * sum(shares[e] for e in engines)
        for engine in engines:
            if u < shares[engine]:
                break
            u -= shares[engine]
    return rng.choice(by_engine[engine])


def plan_corpus(config: SpeechSynthConfig) -> dict[str, list[Utterance]]:
    """Every utterance of every split, a pure function of `config` (its `workers` aside)."""
    sentences = load_sentences(config.text_sources, config.min_words, config.max_words)
    random.Random(f"{config.seed}/text").shuffle(sentences)
    n_eval = config.test_heldout + config.test_seen + config.valid
    if n_eval >= len(sentences):
        raise ToolkitError(f"SpeechSynthConfig: the evaluation splits need {n_eval} distinct sentences and the text "
                           f"sources give {len(sentences)}; lower valid/test_seen/test_heldout or add text_sources")
    pools, start = {}, 0
    for split in ("test_heldout", "test_seen", "valid"):  # disjoint slices; train takes the rest
        pools[split] = sentences[start:start + getattr(config, split)]
        start += getattr(config, split)
    rest = sentences[start:]
    pools["train"] = [rest[i % len(rest)] for i in range(config.train)]
    train_voices, heldout_voices = split_voices(config)
    plan = {}
    for split in SPLITS:
        rng = random.Random(f"{config.seed}/{split}")
        by_engine, shares = _engine_draw(heldout_voices if split == "test_heldout" else train_voices, config)
        utts = []
        for i, sentence in enumerate(pools[split]):
            speaker = Speaker(_pick_voice(rng, by_engine, shares), rng.choice(config.rates),
                              rng.choice(config.pitches))
            aug = sample_augmentation(rng, config.augment) if split in config.augment_splits else {}
            utts.append(Utterance(f"{split}_{i:06d}", split, normalize_transcript(sentence), spoken_form(sentence),
                                  speaker, aug, rng.getrandbits(32)))
        plan[split] = utts
    return plan


def lm_sentences(config: SpeechSynthConfig, plan: dict[str, list[Utterance]] | None = None) -> list[str]:
    """The language-model text of the corpus `config` makes (module docstring), as transcripts, in the text
    sources' order. `plan`: `plan_corpus(config)`, when already computed."""
    plan = plan_corpus(config) if plan is None else plan
    held_out = _WordSequences(normalize_text(u.text) for split in EVAL_SPLITS for u in plan[split])
    texts = (normalize_transcript(s) for s in load_sentences(config.text_sources, config.min_words, config.max_words))
    return [t for t in texts if not held_out.found_in(normalize_text(t))]


class _WordSequences:
    """A set of word sequences, to ask whether a text holds any of them as consecutive whole words."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.by_first: dict[str, list[list[str]]] = {}
        for words in {tuple(t.split()) for t in texts if t.split()}:
            self.by_first.setdefault(words[0], []).append(list(words))

    def found_in(self, text: str) -> bool:
        words = text.split()
        return any(words[i:i + len(seq)] == seq for i, w in enumerate(words) for seq in self.by_first.get(w, ()))


def render(utt: Utterance, keep_silence: float = 0.15) -> np.ndarray:
    """The samples of `utt`: synthesised, augmented, scaled to a peak of `PEAK` (float32, 16 kHz)."""
    x = apply_augmentation(synthesize(utt.speaker, utt.spoken, keep_silence), utt.augment, utt.seed)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return (x * (PEAK / peak) if peak > 0 else x).astype(np.float32)


def _write_wav(path: Path, x: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(tmp, x, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def _make_one(job: tuple[Utterance, str, float]) -> int:
    """Worker: synthesise one utterance to its wav (unless that file exists); returns its length in samples."""
    utt, path, keep_silence = job
    wav = Path(path)
    if not wav.is_file():
        _write_wav(wav, render(utt, keep_silence))
    return sf.info(str(wav)).frames


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _manifest_complete(path: Path, utts: list[Utterance], wav_dir: Path) -> bool:
    """True when the manifest at `path` lists exactly `utts` (ids and texts) and every wav exists."""
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return False
    return ([(r.get("id"), r.get("text")) for r in rows] == [(u.id, u.text) for u in utts]
            and all((wav_dir / f"{u.id}.wav").is_file() for u in utts))


def _record(config: SpeechSynthConfig) -> dict:
    """What `speech_corpus.json` holds for `config`: the format and every setting but `workers`."""
    return {"format": FORMAT, "config": {k: v for k, v in json.loads(json.dumps(asdict(config))).items()
                                         if k != "workers"}}


def _with_defaults(recorded: dict, defaults: dict) -> dict:
    """`recorded` with the keys it lacks taken from `defaults`, at every level: a corpus recorded before a setting
    existed was made as that setting's default makes it (a new setting's default changes nothing)."""
    merged = dict(defaults)
    for key, value in recorded.items():
        both = isinstance(value, dict) and isinstance(defaults.get(key), dict)
        merged[key] = _with_defaults(value, defaults[key]) if both else value
    return merged


def _check_record(out_dir: Path, config: SpeechSynthConfig) -> None:
    """Record the config in `out_dir/speech_corpus.json`, or refuse a folder made with another one."""
    record = out_dir / "speech_corpus.json"
    current = _record(config)
    if record.is_file():
        try:
            old = json.loads(record.read_text(encoding="utf-8"))
        except ValueError:
            raise ToolkitError(f"{record}: not valid JSON; delete the folder and make the corpus again") from None
        if isinstance(old, dict) and isinstance(old.get("config"), dict):  # keys added since took their defaults
            old["config"] = _with_defaults(old["config"], _record(SpeechSynthConfig())["config"])
        else:
            old = {"config": {}}  # not a record this toolkit writes: refused below
        if old != current:
            old_cfg, new_cfg = old["config"], current["config"]
            key = next((k for k in new_cfg if old_cfg.get(k) != new_cfg[k]), "format")
            raise ToolkitError(f"{record}: this folder was made with another config ({key}: {old_cfg.get(key)!r}, "
                               f"now {new_cfg.get(key)!r}); use another folder or delete this one")
    else:
        write_atomic(record, json.dumps(current, indent=1) + "\n")


def make_speech_corpus(out_dir: str | Path, config: SpeechSynthConfig = SpeechSynthConfig(),
                       progress: bool = True) -> dict[str, Path]:
    """Synthesise the corpus under `out_dir` (see the module docstring); returns {split: JSONL manifest path}.
    The language-model text is written next to them, as `out_dir/lm_text.txt` (`LM_TEXT`)."""
    from tqdm import tqdm

    plan = plan_corpus(config)
    voices = sorted({u.speaker.voice for utts in plan.values() for u in utts}, key=lambda v: v.id)
    check_voices(voices)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_record(out_dir, config)
    workers = max(1, config.workers or os.cpu_count() or 1)
    pool = None
    if workers > 1:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method), initializer=_init_worker)
    paths: dict[str, Path] = {}
    try:
        for split, utts in plan.items():
            wav_dir = out_dir / "wav" / split
            wav_dir.mkdir(parents=True, exist_ok=True)
            manifest = out_dir / f"{split}.jsonl"
            paths[split] = manifest
            if _manifest_complete(manifest, utts, wav_dir):
                continue
            jobs = [(u, str(wav_dir / f"{u.id}.wav"), config.keep_silence) for u in utts]
            if pool is None:
                results = map(_make_one, jobs)
            else:
                results = pool.map(_make_one, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
            frames = list(tqdm(results, total=len(jobs), desc=f"speech {split}", unit="utt", disable=not progress))
            lines = []
            for u, n in zip(utts, frames):
                row = {"id": u.id, "audio": f"wav/{split}/{u.id}.wav", "text": u.text,
                       "duration": round(n / SAMPLE_RATE, 4), "speaker": u.speaker.id, "voice": u.speaker.voice.id,
                       "accent": u.speaker.voice.accent, "augment": u.augment}
                lines.append(json.dumps(row, ensure_ascii=False) + "\n")
            write_atomic(manifest, "".join(lines))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    lm_text = "".join(f"{t}\n" for t in lm_sentences(config, plan))
    lm_path = out_dir / LM_TEXT
    if not lm_path.is_file() or lm_path.read_text(encoding="utf-8") != lm_text:  # a re-run rewrites nothing
        write_atomic(lm_path, lm_text)
    return paths
