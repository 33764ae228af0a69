"""A synthetic speech corpus made offline: real English sentences spoken by many synthetic voices.

    from toolkit.synth.speech import SpeechSynthConfig, make_speech_corpus
    paths = make_speech_corpus("data/synth_speech", SpeechSynthConfig(train=9000, seed=0))  # {split: manifest}

Text: sentences from Debian's fortune files and WordNet's example sentences (`text_corpus`), 3-20 words, written
as `normalize_transcript` gives them (lowercase a-z, apostrophe, space; numbers and symbols spelled out). The
synthesiser speaks exactly those words (with the sentence's pauses kept, `spoken_form`).

Voices (`voices`): espeak-ng English accents x voice variants, and the voices of five more engines, each its own
accent: flite (slt, rms, awb, kal16, kal), MBROLA (us1, us2, us3, en1: diphones of real speakers, driven by
espeak-ng), SVOX Pico (en-US, en-GB), Piper (joe: a neural voice trained on a real speaker) and Festival
(kal_diphone, cmu_us_slt_arctic_hts: an HMM voice). Each engine speaks its `engine_shares` of a split's utterances
(flite 15%, MBROLA 12%, Pico 5%, Piper 3%, Festival 5%; Piper, the slow one, is kept small: see `voices`) when
the split has voices of it, espeak-ng what the others leave; each utterance at a rate from `rates` and a pitch
offset from `pitches` (0 for the voices without pitch control); a speaker id names voice, rate and pitch
("espeak:en-gb-scotland+f2:r1.15:p-15"). The voices of the other engines are built from recordings of real
speakers (diphones, clustered units, HMM and neural models), so they add speakers that espeak-ng's formant
synthesis cannot imitate. A voice this machine cannot make (its engine or its data not installed, `usable_config`)
is left out with one logged line saying what to install, and the corpus is made of the others; its record says so.

Splits (`out_dir/<split>.jsonl`, audio in `out_dir/wav/<split>/<id>.wav`, 16 kHz mono PCM16):
    train         training voices, its own sentences (reused with other speakers only if the text runs out)
    valid         training voices, sentences that no other split has
    test_seen     training voices, sentences that no other split has
    test_heldout  held-out voices: accents in `held_out_accents` spoken with variants in `held_out_variants` (and
                  held-out voices of the other engines, e.g. "flite-rms"); training never hears any of those accents
                  or variants (voices that mix a held-out accent with a seen variant, or the reverse, are used
                  nowhere). Sentences that no other split has.
    test_unseen   unseen voices (`unseen_voices`): whole voices of the other engines that no other split has, each
                  speaking about as many utterances (whatever its engine's share). Sentences that no other split has.
Default held-out: accents en-gb-x-gbclan (Lancaster), en-us-nyc (New York City) and flite's rms voice; variants
m4, f3, klatt2. Default unseen: Pico en-GB, MBROLA us3 and Festival cmu_us_slt_arctic_hts. Training: en-gb, en-us,
en-gb-x-rp, en-gb-scotland, en-gb-x-gbcwmd, en-029 x m1 m2 m3 m5 m6 m7 f1 f2 f4 klatt klatt3 Annie edward; flite's
slt, awb, kal16, kal; MBROLA us1, us2, en1; Pico en-US; Piper joe; Festival kal_diphone.

Augmentation (`augment`, splits in `augment_splits`, train only by default so the test splits measure voices and
sentences, not noise): speed perturbation, reverberation, additive noise at a random SNR, telephone band; and, when
`augment.voice_prob` > 0 (`toolkit synth speech --voice-shift P`), voices shifted in pitch and formants together, as
if spoken by a larger or smaller speaker. The evaluation splits do not depend on the augmentation settings.

Manifest lines: {"id", "audio" (relative to the manifest's folder), "text", "duration" (s), "speaker", "voice",
"accent", "augment" (the augmentations applied, {} for none)}.

Language-model text (`out_dir/lm_text.txt`, `lm_sentences`): every sentence of the text sources (3-20 words, as
transcripts, one per line) except those of the evaluation splits (valid, test_seen, test_heldout, test_unseen)
and those that hold one of them as
consecutive whole words ("do you see what i mean" holds "see what i mean"), compared after scoring normalisation
(`toolkit.text.normalize`) so that no evaluation sentence leaks in another spelling; the training sentences stay.
It is the text-only data an external language model is trained on (as LibriSpeech ships an LM corpus beside its
audio): ~57,000 sentences against the 9,000 spoken in train.

Determinism and re-runs: everything (texts, speakers, augmentation parameters and noise) is drawn from `seed`, and
every engine is deterministic, so the same config and the same installed engines give the same corpus byte for byte,
whatever `workers` (a voice left out changes the draws). The config is recorded in `out_dir/speech_corpus.json` (a
setting added to the toolkit after a corpus was made counts as its default there), with the utterances of each
engine and the voices left out; re-running with the same config reuses what is there: a split whose manifest lists
every planned utterance and whose wav files all exist is skipped, and otherwise only the missing wav files are
synthesised (each wav and each manifest is written to a temporary file and renamed, so an interrupted run leaves no
half-written file). A different config for the same folder is refused, and so are other engines (one installed or
removed since).

Parallelism: `workers` processes (default `os.cpu_count()`), forked where the platform can (as torch's DataLoader
does; each worker runs torch on one thread), spawned elsewhere (then call `make_speech_corpus` from under
`if __name__ == "__main__":`). `workers=1` synthesises in the calling process.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf

from toolkit.data.audio import SAMPLE_RATE
from toolkit.synth.augment import AugmentConfig, apply_augmentation, sample_augmentation
from toolkit.synth.text_corpus import SOURCES, load_sentences
from toolkit.synth.text_normalize import normalize_transcript, spoken_form
from toolkit.synth.voices import (ESPEAK_ACCENTS, ESPEAK_VARIANTS, FESTIVAL_VOICES, FLITE_VOICES, MBROLA_VOICES,
                                  ENGINES, ONE_VOICE_ENGINES, PICO_VOICES, PIPER_VOICES, Speaker, Voice, available,
                                  check_voices, require_binary, reserved, synthesize)
from toolkit.errors import ConfigError, ToolkitError
from toolkit.files import write_atomic
from toolkit.text.normalize import normalize_text

__all__ = ["LM_TEXT", "SPLITS", "SpeechSynthConfig", "Utterance", "lm_sentences", "make_speech_corpus",
           "normalize_transcript", "plan_corpus", "split_voices", "usable_config"]
SPLITS = ("train", "valid", "test_seen", "test_heldout", "test_unseen")
EVAL_SPLITS = ("valid", "test_seen", "test_heldout", "test_unseen")
# The share of a split's utterances each engine speaks (when the split has voices of it); espeak-ng the rest.
# Piper (4.4 utterances/s a core, against 16-78 for the others: `voices`) is kept small: the default corpus (10,100
# utterances) took 205 s on the 2 quiet cores, where espeak-ng and flite alone took 179 s that same hour.
ENGINE_SHARES = {"flite": 0.15, "mbrola": 0.12, "pico": 0.05, "piper": 0.03, "festival": 0.05}
UNSEEN_VOICES = ("pico:en-GB", "mbrola:us3", "festival:cmu_us_slt_arctic_hts")
log = logging.getLogger("toolkit.synth")
LM_TEXT = "lm_text.txt"
FORMAT = 1
PEAK = 0.9  # every utterance is scaled to this peak amplitude


@dataclass
class SpeechSynthConfig:
    """Sizes (utterances per split), text, voices and each engine's share, held-out and unseen voices, augmentation
    and parallelism of the corpus."""

    train: int = 9000
    valid: int = 200
    test_seen: int = 300
    test_heldout: int = 300
    test_unseen: int = 300
    seed: int = 0
    text_sources: tuple[str, ...] = ("fortunes", "wordnet")
    min_words: int = 3
    max_words: int = 20
    accents: tuple[str, ...] = ESPEAK_ACCENTS
    variants: tuple[str, ...] = ESPEAK_VARIANTS
    flite_voices: tuple[str, ...] = FLITE_VOICES  # () for none; the same for each engine below
    mbrola_voices: tuple[str, ...] = MBROLA_VOICES  # Debian non-free mbrola-<name> packages
    pico_voices: tuple[str, ...] = PICO_VOICES  # Debian non-free libttspico-utils
    piper_voices: tuple[str, ...] = PIPER_VOICES  # pip piper-tts and the voice's package
    festival_voices: tuple[str, ...] = FESTIVAL_VOICES  # Debian festvox-* packages
    held_out_accents: tuple[str, ...] = ("en-gb-x-gbclan", "en-us-nyc", "flite-rms")
    held_out_variants: tuple[str, ...] = ("m4", "f3", "klatt2")
    unseen_voices: tuple[str, ...] = UNSEEN_VOICES  # voice ids of the engines above that only test_unseen has
    engine_shares: dict[str, float] = field(default_factory=lambda: dict(ENGINE_SHARES))  # espeak-ng: the rest
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
        for engine in ONE_VOICE_ENGINES:
            bad = [n for n in getattr(self, f"{engine}_voices") if reserved(Voice.single(engine, n))]
            if bad:
                raise ConfigError(f"{where}.{engine}_voices: {bad[0]!r} is reserved for independent evaluation")
        single = [v.accent for v in _single_voices(self)]
        bad = [a for a in self.held_out_accents if a not in self.accents and a not in single]
        if bad:
            raise ConfigError(f"{where}.held_out_accents: {bad[0]!r} is not in accents nor <engine>-<name> for a "
                              "voice of flite_voices, mbrola_voices, pico_voices, piper_voices or festival_voices")
        ids = {v.id for v in _single_voices(self)}
        bad = [v for v in self.unseen_voices if v not in ids]
        if bad:
            raise ConfigError(f"{where}.unseen_voices: {bad[0]!r} is not the id of a voice of flite_voices, "
                              "mbrola_voices, pico_voices, piper_voices or festival_voices ('<engine>:<name>')")
        bad = [v for v in self.unseen_voices if Voice.parse(v).accent in self.held_out_accents]
        if bad:
            raise ConfigError(f"{where}.unseen_voices: {bad[0]!r} is also held out (held_out_accents): a voice "
                              "belongs to one test split")
        bad = [v for v in self.held_out_variants if v not in self.variants]
        if bad:
            raise ConfigError(f"{where}.held_out_variants: {bad[0]!r} is not in variants")
        if not 1 <= self.min_words <= self.max_words:
            raise ConfigError(f"{where}.min_words/max_words: need 1 <= min_words <= max_words")
        if not self.rates or any(r <= 0 for r in self.rates) or not self.pitches:
            raise ConfigError(f"{where}.rates/pitches: need at least one of each, rates > 0")
        shares = self.engine_shares
        unknown = [e for e in shares if e not in ONE_VOICE_ENGINES] if isinstance(shares, dict) else [shares]
        if unknown:
            raise ConfigError(f"{where}.engine_shares: expected {{engine: share}} with engines among "
                              f"{', '.join(ONE_VOICE_ENGINES)} (espeak-ng speaks the rest), got {unknown[0]!r}")
        self.engine_shares = shares = {e: shares.get(e, 0.0) for e in ONE_VOICE_ENGINES}  # an engine not named: 0
        bad = [e for e, p in shares.items() if isinstance(p, bool) or not isinstance(p, (int, float))
               or not 0.0 <= p <= 1.0]
        if bad:
            raise ConfigError(f"{where}.engine_shares.{bad[0]}: must be in [0, 1], got {shares[bad[0]]!r}")
        if sum(shares.values()) > 1.0 + 1e-9:
            raise ConfigError(f"{where}.engine_shares: must add up to <= 1, got {sum(shares.values()):g}")
        train_voices, heldout_voices, unseen_voices = split_voices(self)
        if not train_voices:
            raise ConfigError(f"{where}.held_out_accents/held_out_variants/unseen_voices: no voice is left for "
                              "training")
        if self.test_heldout and not heldout_voices:
            raise ConfigError(f"{where}.held_out_accents/held_out_variants: no held-out voice for test_heldout")
        if self.test_unseen and not unseen_voices:
            raise ConfigError(f"{where}.unseen_voices: no voice for test_unseen (or set test_unseen to 0)")


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


def split_voices(config: SpeechSynthConfig) -> tuple[list[Voice], list[Voice], list[Voice]]:
    """(training voices, held-out voices, unseen voices): training voices have neither a held-out accent nor a
    held-out variant and are not unseen voices; held-out voices have both (a held-out voice of a one-voice engine
    counts as both); unseen voices are `config.unseen_voices`."""
    accents, variants = set(config.held_out_accents), set(config.held_out_variants)
    unseen = [Voice.parse(v) for v in config.unseen_voices]
    espeak = [Voice("espeak", a, v) for a in config.accents for v in config.variants]
    single = [v for v in _single_voices(config) if v not in unseen]
    train = [v for v in espeak if v.accent not in accents and v.variant not in variants]
    train += [v for v in single if v.accent not in accents]
    heldout = [v for v in espeak if v.accent in accents and v.variant in variants]
    heldout += [v for v in single if v.accent in accents]
    return train, heldout, unseen


def _single_voices(config: SpeechSynthConfig) -> list[Voice]:
    """The voices of the one-voice engines of `config` (flite, MBROLA, Pico, Piper, Festival): each is its own
    accent."""
    return [Voice.single(engine, name) for engine in ONE_VOICE_ENGINES for name in getattr(config, f"{engine}_voices")]


def _engine_draw(voices: list[Voice], config: SpeechSynthConfig) -> tuple[dict[str, list[Voice]], dict[str, float]]:
    """`voices` by engine, and each engine's share: `config.engine_shares`, espeak-ng what the engines of `voices`
    leave."""
    by_engine: dict[str, list[Voice]] = {}
    for engine in ONE_VOICE_ENGINES + ("espeak",):  # the order in which `_pick_voice` walks the shares
        group = [v for v in voices if v.engine == engine]
        if group:
            by_engine[engine] = group
    shares = {e: config.engine_shares.get(e, 0.0) for e in ONE_VOICE_ENGINES}
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


def usable_config(config: SpeechSynthConfig) -> tuple[SpeechSynthConfig, dict[str, list[str]]]:
    """`config` without the voices of one-voice engines that this machine cannot make (`voices.available`), and
    {why (one line saying what to install): the voice ids left out}. espeak-ng is not optional: without it, a
    one-line error. A split left without voices is a one-line error too."""
    if config.accents and config.variants:
        require_binary("espeak")
    skipped: dict[str, list[str]] = {}
    for voice in _single_voices(config):
        reason = available(voice)
        if reason is not None:
            key = reason.removeprefix(f"voice {voice.id}: ")
            skipped.setdefault(key, []).append(voice.id)
    if not skipped:
        return config, skipped
    out = {v for ids in skipped.values() for v in ids}
    keep = {f"{e}_voices": tuple(n for n in getattr(config, f"{e}_voices") if f"{e}:{n}" not in out)
            for e in ONE_VOICE_ENGINES}
    gone = {Voice.parse(v).accent for v in out}
    try:
        usable = replace(config, **keep, held_out_accents=tuple(a for a in config.held_out_accents if a not in gone),
                         unseen_voices=tuple(v for v in config.unseen_voices if v not in out))
    except ConfigError as e:
        raise ToolkitError(f"{e}, without the voices this machine cannot make ({'; '.join(skipped)})") from None
    return usable, skipped


def plan_corpus(config: SpeechSynthConfig) -> dict[str, list[Utterance]]:
    """Every utterance of every split, a pure function of `config` (its `workers` aside)."""
    sentences = load_sentences(config.text_sources, config.min_words, config.max_words)
    random.Random(f"{config.seed}/text").shuffle(sentences)
    n_eval = sum(getattr(config, split) for split in EVAL_SPLITS)
    if n_eval >= len(sentences):
        raise ToolkitError(f"SpeechSynthConfig: the evaluation splits need {n_eval} distinct sentences and the text "
                           f"sources give {len(sentences)}; lower valid/test_seen/test_heldout/test_unseen or add "
                           "text_sources")
    pools, start = {}, 0
    for split in ("test_heldout", "test_seen", "valid", "test_unseen"):  # disjoint slices; train takes the rest
        pools[split] = sentences[start:start + getattr(config, split)]
        start += getattr(config, split)
    rest = sentences[start:]
    pools["train"] = [rest[i % len(rest)] for i in range(config.train)]
    train_voices, heldout_voices, unseen_voices = split_voices(config)
    plan = {}
    for split in SPLITS:
        rng = random.Random(f"{config.seed}/{split}")
        by_engine, shares = _engine_draw(heldout_voices if split == "test_heldout" else train_voices, config)
        utts = []
        for i, sentence in enumerate(pools[split]):
            # test_unseen: each unseen voice alike, whatever its engine's share
            voice = rng.choice(unseen_voices) if split == "test_unseen" else _pick_voice(rng, by_engine, shares)
            rate, pitch = rng.choice(config.rates), rng.choice(config.pitches)
            speaker = Speaker(voice, rate, pitch if voice.has_pitch else 0)
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


def _record(config: SpeechSynthConfig, plan: dict[str, list[Utterance]] | None = None,
            skipped: dict[str, list[str]] | None = None) -> dict:
    """What `speech_corpus.json` holds for `config`: the format and every setting but `workers`; with `plan`, the
    utterances of each engine (over all splits, in the order of `ENGINES`), and the voices left out because this
    machine could not make them (`usable_config`), with why."""
    record = {"format": FORMAT, "config": {k: v for k, v in json.loads(json.dumps(asdict(config))).items()
                                           if k != "workers"}}
    if plan is not None:
        counts = {e: sum(u.speaker.voice.engine == e for utts in plan.values() for u in utts) for e in ENGINES}
        record["engines"] = {e: n for e, n in counts.items() if n}
        record["skipped_voices"] = {v: why for why, ids in (skipped or {}).items() for v in ids}
    return record


def _with_defaults(recorded: dict, defaults: dict) -> dict:
    """`recorded` with the keys it lacks taken from `defaults`, at every level: a corpus recorded before a setting
    existed was made as that setting's default makes it (a new setting's default changes nothing)."""
    merged = dict(defaults)
    for key, value in recorded.items():
        both = isinstance(value, dict) and isinstance(defaults.get(key), dict)
        merged[key] = _with_defaults(value, defaults[key]) if both else value
    return merged


def _check_record(out_dir: Path, current: dict) -> None:
    """Write the record `current` (`_record`) to `out_dir/speech_corpus.json`, or refuse a folder made with another
    config, or with other engines (one installed or removed since)."""
    record = out_dir / "speech_corpus.json"
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
            key = next((k for k in new_cfg if old_cfg.get(k) != new_cfg[k]), None)
            if key is not None:
                raise ToolkitError(f"{record}: this folder was made with another config ({key}: "
                                   f"{old_cfg.get(key)!r}, now {new_cfg.get(key)!r}); use another folder or delete "
                                   "this one")
            key = next((k for k in current if old.get(k) != current[k]), "format")
            raise ToolkitError(f"{record}: this folder was made with other {key.replace('_', ' ')} "
                               f"({old.get(key)!r}, now {current.get(key)!r}); use another folder or delete this one")
    else:
        write_atomic(record, json.dumps(current, indent=1) + "\n")


def make_speech_corpus(out_dir: str | Path, config: SpeechSynthConfig = SpeechSynthConfig(),
                       progress: bool = True) -> dict[str, Path]:
    """Synthesise the corpus under `out_dir` (see the module docstring); returns {split: JSONL manifest path}.
    The language-model text is written next to them, as `out_dir/lm_text.txt` (`LM_TEXT`)."""
    from tqdm import tqdm

    usable, skipped = usable_config(config)
    for why, ids in skipped.items():  # once each, here: the workers only get voices that can be made
        log.warning("%s: skipping %s", why, ", ".join(ids))
    plan = plan_corpus(usable)
    voices = sorted({u.speaker.voice for utts in plan.values() for u in utts}, key=lambda v: v.id)
    check_voices(voices)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_record(out_dir, _record(config, plan, skipped))
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
    lm_text = "".join(f"{t}\n" for t in lm_sentences(usable, plan))
    lm_path = out_dir / LM_TEXT
    if not lm_path.is_file() or lm_path.read_text(encoding="utf-8") != lm_text:  # a re-run rewrites nothing
        write_atomic(lm_path, lm_text)
    return paths
