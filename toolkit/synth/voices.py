"""Synthetic voices: espeak-ng English accents x voice variants, flite's voices and MBROLA's English voices, at
several rates and pitches.

A voice is a string id: "espeak:<accent>+<variant>" (e.g. "espeak:en-gb-scotland+f2"), "flite:<name>" (e.g.
"flite:slt") or "mbrola:<name>" (e.g. "mbrola:us2": an MBROLA diphone database, recorded by a real speaker, that
espeak-ng drives as its voice "mb-us2"). Its accent is the espeak-ng language ("en-gb-scotland") or, for flite and
MBROLA, "<engine>-<name>" (each such voice is its own accent and has no variant). A speaker is a voice at a
speaking rate and a pitch offset: "espeak:en-us+m3:r1.15:p-15". Rate is a factor on the synthesiser's default
(espeak-ng `-s 175*rate` words per minute, MBROLA voices included; flite `duration_stretch=1/rate`); pitch is an
offset on espeak-ng's 0-99 pitch scale (`-p 50+pitch`) and, for flite, a percentage on the voice's mean F0
(`int_f0_target_mean`; `rms` ignores it).

`synthesize` runs the synthesiser in a subprocess writing a WAV file to a pipe, reads it with soundfile, resamples to
16 kHz mono and sets the leading/trailing silence to `keep_silence` seconds. espeak-ng, flite and MBROLA are
deterministic: the same text and speaker give the same samples.

MBROLA is in Debian's contrib section and its voices in non-free: `apt-get install mbrola mbrola-us1 mbrola-us2
mbrola-us3 mbrola-en1`, with `contrib non-free` among the apt sources' components.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from toolkit.data.audio import SAMPLE_RATE
from toolkit.errors import ToolkitError

ESPEAK_ACCENTS = ("en-gb", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbcwmd", "en-029", "en-gb-x-gbclan",
                  "en-us-nyc")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt2", "klatt3",
                   "Annie", "edward")
FLITE_VOICES = ("slt", "rms", "awb", "kal16")
FLITE_F0 = {"slt": 170.0, "rms": 105.0, "awb": 125.0, "kal16": 100.0, "kal": 100.0}  # mean F0 (Hz) per voice
MBROLA_VOICES = ("us1", "us2", "us3", "en1")  # American female, two American males, a British male
BINARIES = {"espeak": "espeak-ng", "flite": "flite", "mbrola": "mbrola"}  # engine -> command (Debian package)
ONE_VOICE_ENGINES = ("flite", "mbrola")  # engines whose every voice is its own accent, "<engine>-<name>"


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak", "flite" or "mbrola"
    accent: str  # espeak-ng language, or "<engine>-<name>"
    variant: str = ""  # espeak-ng variant; "" for flite and MBROLA

    @staticmethod
    def single(engine: str, name: str) -> Voice:
        """The flite or MBROLA voice `name`."""
        return Voice(engine, f"{engine}-{name}")

    @property
    def name(self) -> str:
        """The synthesiser's name for the voice: "en-us+m3", "slt", "us2"."""
        if self.engine == "espeak":
            return f"{self.accent}+{self.variant}"
        return self.accent.removeprefix(f"{self.engine}-")

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"

    @staticmethod
    def parse(voice_id: str) -> Voice:
        """The inverse of `Voice.id`."""
        engine, _, rest = voice_id.partition(":")
        if engine == "espeak" and "+" in rest:
            accent, _, variant = rest.partition("+")
            return Voice("espeak", accent, variant)
        if engine in ONE_VOICE_ENGINES and rest:
            return Voice.single(engine, rest)
        raise ToolkitError(f"voice {voice_id!r}: expected 'espeak:<accent>+<variant>', 'flite:<name>' or "
                           "'mbrola:<name>'")


@dataclass(frozen=True)
class Speaker:
    voice: Voice
    rate: float = 1.0
    pitch: int = 0

    @property
    def id(self) -> str:
        return f"{self.voice.id}:r{self.rate:.2f}:p{self.pitch:+d}"

    def command(self, text: str) -> list[str]:
        """The synthesiser's command line writing `text` spoken by this speaker as a WAV file to stdout."""
        v = self.voice
        if v.engine == "flite":
            f0 = FLITE_F0.get(v.name, 120.0) * (1 + self.pitch / 100)
            return ["flite", "-voice", v.name, "--setf", f"duration_stretch={1 / self.rate:.4f}",
                    "--setf", f"int_f0_target_mean={f0:.1f}", "-t", text, "-o", "/dev/stdout"]
        espeak_voice = f"mb-{v.name}" if v.engine == "mbrola" else v.name
        return ["espeak-ng", "-v", espeak_voice, "-s", str(round(175 * self.rate)), "-p", str(50 + self.pitch),
                "--stdout", text]


def require_binary(engine: str) -> str:
    """The path of `engine`'s synthesiser, or a one-line error saying how to install it."""
    name = BINARIES[engine]
    path = shutil.which(name)
    if path is None:
        where = " (Debian contrib)" if engine == "mbrola" else ""
        raise ToolkitError(f"{name} not found: install it with `apt-get install {name}`{where}")
    return path


@lru_cache(maxsize=None)
def _available(engine: str, what: str) -> frozenset[str]:
    if engine == "flite":
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
        return frozenset(out.split(":", 1)[-1].split())
    out = subprocess.run(["espeak-ng", f"--voices={what}"], capture_output=True, text=True).stdout.splitlines()[1:]
    rows = [line.split() for line in out if line.strip()]
    if what == "variant":  # columns: Pty Language Age/Gender VoiceName File; a variant's File is "!v/<name>"
        return frozenset(r[4].split("/")[-1] for r in rows if len(r) > 4 and r[4].startswith("!v/"))
    return frozenset(r[1] for r in rows if len(r) > 4 and not r[4].startswith(("mb/", "!v/")))  # no mbrola


@lru_cache(maxsize=None)
def _mbrola_installed(name: str) -> bool:
    """Whether espeak-ng speaks with the MBROLA voice `name`: espeak-ng lists every MBROLA voice, and whether its
    database is installed shows only on use."""
    probe = subprocess.run(["espeak-ng", "-v", f"mb-{name}", "--stdout", "a"], capture_output=True)
    return probe.returncode == 0 and len(probe.stdout) > 0


def check_voices(voices: list[Voice]) -> None:
    """Refuse, in one line, a voice whose synthesiser is missing or that the synthesiser does not have
    (espeak-ng and flite silently fall back to a default voice for an unknown name)."""
    for v in voices:
        require_binary(v.engine)
        if v.engine == "mbrola":
            require_binary("espeak")
            if not _mbrola_installed(v.name):
                raise ToolkitError(f"voice {v.id}: the MBROLA voice {v.name!r} is not installed (Debian non-free: "
                                   f"`apt-get install mbrola-{v.name.split('-')[0]}`)")
        elif v.engine == "espeak":
            if v.accent not in _available("espeak", "en"):
                raise ToolkitError(f"voice {v.id}: espeak-ng has no English accent {v.accent!r} "
                                   f"(it has: {' '.join(sorted(_available('espeak', 'en')))})")
            if v.variant not in _available("espeak", "variant"):
                raise ToolkitError(f"voice {v.id}: espeak-ng has no variant {v.variant!r} "
                                   "(see `espeak-ng --voices=variant`)")
        elif v.name not in _available("flite", ""):
            raise ToolkitError(f"voice {v.id}: flite has no voice {v.name!r} "
                               f"(it has: {' '.join(sorted(_available('flite', '')))})")


def to_16k_mono(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """float32 mono at 16 kHz (channels averaged, resampled with torchaudio's windowed sinc)."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sample_rate != SAMPLE_RATE:
        x = AF.resample(torch.from_numpy(x), sample_rate, SAMPLE_RATE).numpy()
    return x


def trim_silence(x: np.ndarray, keep: float = 0.15, threshold_db: float = -45.0, sample_rate: int = SAMPLE_RATE,
                 frame: float = 0.01) -> np.ndarray:
    """Set the silence before the first and after the last sounding 10 ms frame (one within `threshold_db` of the
    loudest) to `keep` seconds: longer silence is cut, shorter is padded with zeros (espeak-ng starts speaking
    after about 10 ms)."""
    hop = max(1, int(frame * sample_rate))
    n = len(x) // hop
    if n == 0:
        return x
    energy = (x[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(axis=1) + 1e-12
    loud = np.flatnonzero(10 * np.log10(energy) > 10 * np.log10(energy.max()) + threshold_db)
    margin = int(keep * sample_rate)
    start, end = loud[0] * hop - margin, (loud[-1] + 1) * hop + margin
    out = x[max(0, start):min(len(x), end)]
    return np.pad(out, (max(0, -start), max(0, end - len(x)))).astype(np.float32)


def synthesize(speaker: Speaker, text: str, keep_silence: float = 0.15) -> np.ndarray:
    """`text` spoken by `speaker`: float32 mono samples at 16 kHz, `keep_silence` seconds of silence at each end."""
    command = speaker.command(text)
    name = command[0]
    try:
        proc = subprocess.run(command, capture_output=True, timeout=120)
    except FileNotFoundError:
        require_binary("flite" if name == "flite" else "espeak")
        raise
    except subprocess.TimeoutExpired:
        raise ToolkitError(f"{name} took over 120 s for speaker {speaker.id} on {text[:60]!r}") from None
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"exit status {proc.returncode}")
        audio, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=False)
        if len(audio) == 0:
            raise RuntimeError("no audio")
    except RuntimeError as e:  # soundfile's errors included
        detail = (proc.stderr.decode(errors="replace").strip().splitlines() or [str(e)])[-1]
        raise ToolkitError(f"{name} failed for speaker {speaker.id} on {text!r}: {detail}") from None
    return trim_silence(to_16k_mono(audio, sr), keep=keep_silence)
