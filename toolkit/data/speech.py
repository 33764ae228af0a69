"""Speech corpora: JSONL manifests, Kaldi data folders and the LibriSpeech layout, read into `SpeechRecord`s.

    records = read_speech("train.jsonl")                         # {"audio", "text", "duration"?, ...} per line
    records = read_speech("data/train")                          # Kaldi: wav.scp + text (+ segments, utt2spk)
    records = read_speech("LibriSpeech", subsets=["train-clean-100", "train-clean-360"])
    good, report = check_speech_records(records, max_duration=20.0, charset=set(tokenizer_chars))
    print(describe_skipped(report))
    write_jsonl_manifest(good, "exp/train.jsonl")                # durations filled in: the next read is cheap

Formats:

    JSONL     one object per line: "audio" (path; NeMo's "audio_filepath" is accepted too), "text" (str), and
              optional "duration" (s, > 0), "id", "speaker", "offset" / "end" (s, a segment of a longer file; with
              "offset" and "duration" but no "end" key, end = offset + duration as in NeMo); other keys go to
              `extra`. Relative audio paths resolve against the manifest's folder; `id` defaults to the "audio"
              value (+ "@offset" for a segment) and must be unique.
    Kaldi     `wav.scp` (`utt path`), `text` (`utt words...`), optional `segments` (`seg rec start end`, end -1 =
              to the end of the recording), `utt2spk` (`utt spk`), `utt2dur` (`utt seconds`). Piped commands
              (`cmd |`) and archive offsets (`foo.ark:123`) are refused. A relative path is taken from the data
              folder when the file exists there, else kept as written (relative to the current folder, as Kaldi
              tools read it). Utterances without a transcript, and transcripts without audio, are skipped and
              logged with a count.
    LibriSpeech  `<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt` (`<speaker>-<chapter>-<n> TEXT`)
              next to `<speaker>-<chapter>-<n>.flac`; `extra` holds "subset" and "chapter".

Transcripts are kept as written (normalising them is the recipe's choice). Files are read as UTF-8; every problem
is a one-line `SpeechFileError` naming `file:line` and the field. Writers are atomic (see `captions`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from toolkit.data.audio import AudioLoadError, audio_duration
from toolkit.data.captions import _relative, _type_name, json_failure
from toolkit.errors import ToolkitError
from toolkit.files import write_atomic

PathLike = str | os.PathLike[str]
log = logging.getLogger("toolkit.data")
_KNOWN_KEYS = ("id", "audio", "text", "duration", "offset", "end", "speaker")


class SpeechFileError(ToolkitError):
    """A speech corpus file that cannot be read: bad JSON, a missing field, a wrong type, bad bytes, a bad line."""


@dataclass
class SpeechRecord:
    """One utterance: `audio` is the resolved path; `offset` / `end` (seconds) select a segment of it (end None:
    to the end of the file); `duration` is the utterance's (segment's) length in seconds when known."""

    id: str
    audio: str
    text: str
    duration: float | None = None
    offset: float = 0.0
    end: float | None = None
    speaker: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- helpers


def _read_lines(path: PathLike, what: str) -> Iterator[tuple[str, str]]:
    """(`file:line`, text) for every non-blank line of a UTF-8 file; one-line errors for missing / non-UTF-8."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise SpeechFileError(f"{path}: {what} not found") from None
    except OSError as e:
        raise SpeechFileError(f"{path}: cannot be read ({e.strerror or e})") from None
    for n, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{path}:{n}"
        try:
            line = raw.decode("utf-8-sig" if n == 1 else "utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise SpeechFileError(f"{where}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})") from None
        if line.strip():
            yield where, line


def _number(where: str, obj: dict[str, Any], key: str, minimum: float, strict: bool) -> float | None:
    """Optional finite number >= minimum (> minimum when `strict`)."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpeechFileError(f"{where}: {key}: must be a number of seconds, got {_type_name(value)}")
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond the float range
        seconds = math.inf
    if not math.isfinite(seconds) or seconds < minimum or (strict and seconds == minimum):
        shown = f"an integer of {len(str(value))} digits" if seconds == math.inf and isinstance(value, int) \
            else repr(value)
        raise SpeechFileError(f"{where}: {key}: must be a finite number {'>' if strict else '>='} {minimum:g}, "
                              f"got {shown}")
    return seconds


def _resolve(root: Path, audio: str) -> str:
    return audio if os.path.isabs(audio) else str(root / audio)


def _fields(where: str, line: str, count: int, names: str, rest: bool = False, optional: bool = False) -> list[str]:
    """The `count` whitespace-separated fields of a line (`rest`: the last one takes the rest of the line;
    `optional`: the last one may be missing, e.g. a Kaldi `text` line with an empty transcript)."""
    parts = line.split(maxsplit=count - 1) if rest else line.split()
    if len(parts) != count and not (optional and len(parts) == count - 1):
        raise SpeechFileError(f"{where}: expected '{names}', got {line.strip()[:80]!r}")
    return parts


def _duration(where: str, text: str) -> float:
    """A `utt2dur` value: a finite number of seconds > 0."""
    value = _seconds(where, "duration", text)
    if value <= 0:
        raise SpeechFileError(f"{where}: duration: must be > 0 seconds, got {text!r}")
    return value


def _seconds(where: str, name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpeechFileError(f"{where}: {name}: not a number ({text!r})") from None
    if not math.isfinite(value):
        raise SpeechFileError(f"{where}: {name}: not a finite number ({text!r})")
    return value


# ------------------------------------------------------------------------------------------------- JSONL


def read_jsonl_manifest(path: PathLike) -> list[SpeechRecord]:
    """Read a JSONL manifest (see the module docstring); blank lines are skipped."""
    root = Path(path).parent
    records: list[SpeechRecord] = []
    seen: dict[str, str] = {}
    for where, line in _read_lines(path, "manifest"):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise SpeechFileError(f"{where}: not valid JSON ({e.msg}, column {e.colno})") from None
        except (ValueError, RecursionError) as e:
            raise SpeechFileError(f"{where}: not valid JSON ({json_failure(e)})") from None
        if not isinstance(obj, dict):
            raise SpeechFileError(f"{where}: expected a JSON object, got {_type_name(obj)}")
        if "audio" not in obj and "audio_filepath" in obj:
            obj["audio"] = obj.pop("audio_filepath")
        for key, kinds, wanted in (("audio", str, "a string"), ("text", str, "a string")):
            if key not in obj:
                raise SpeechFileError(f"{where}: {key}: missing")
            if not isinstance(obj[key], kinds):
                raise SpeechFileError(f"{where}: {key}: must be {wanted}, got {_type_name(obj[key])}")
        if not obj["audio"].strip():
            raise SpeechFileError(f"{where}: audio: empty path")
        for key in ("id", "speaker"):
            value = obj.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
                raise SpeechFileError(f"{where}: {key}: must be a string or an integer, got {_type_name(value)}")
        duration = _number(where, obj, "duration", 0.0, strict=True)
        offset = _number(where, obj, "offset", 0.0, strict=False) or 0.0
        end = _number(where, obj, "end", offset, strict=True)
        if "end" not in obj and "offset" in obj and duration is not None:
            end = offset + duration
            if not math.isfinite(end):
                raise SpeechFileError(f"{where}: offset + duration: {offset!r} + {duration!r} s is not a finite "
                                      "number of seconds")
        uid = str(obj["id"]) if obj.get("id") is not None else obj["audio"] + (f"@{offset:g}" if offset else "")
        if uid in seen:
            raise SpeechFileError(f"{where}: id: {uid!r} already used at line {seen[uid].rsplit(':', 1)[1]}")
        seen[uid] = where
        speaker = obj.get("speaker")
        extra = {k: v for k, v in obj.items() if k not in _KNOWN_KEYS}
        records.append(SpeechRecord(uid, _resolve(root, obj["audio"]), obj["text"], duration, offset, end,
                                    None if speaker is None else str(speaker), extra))
    return records


def write_jsonl_manifest(records: Iterable[SpeechRecord], path: PathLike) -> None:
    """Write `records` as a JSONL manifest, atomically. Audio paths under the manifest's folder are written relative
    to it (the file moves with its audio), others absolute; `offset` 0, `duration` / `speaker` None and `end` None
    of a whole file are left out; `extra` keys follow the standard ones. Reading the file back gives `records`."""
    root = Path(path).parent
    lines = []
    for r in records:
        clash = sorted(set(r.extra) & set(_KNOWN_KEYS + ("audio_filepath",)))
        if clash:
            raise ValueError(f"record {r.id!r}: extra keys {clash} clash with the manifest's own fields")
        obj: dict[str, Any] = {"id": r.id, "audio": _relative(r.audio, root), "text": r.text}
        optional = {"duration": r.duration, "offset": r.offset or None, "end": r.end, "speaker": r.speaker}
        obj.update({k: v for k, v in optional.items() if v is not None})
        if r.offset and r.end is None:
            obj["end"] = None  # to the end of the file (no "end" would mean offset + duration, as in NeMo)
        obj.update(r.extra)
        try:
            lines.append(json.dumps(obj, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise ValueError(f"record {r.id!r}: cannot be written as JSON ({e})") from None
    write_atomic(path, "".join(line + "\n" for line in lines))


# ------------------------------------------------------------------------------------------------- Kaldi


def _kaldi_table(
    path: Path, count: int, names: str, what: str, rest: bool = False, optional: bool = False
) -> dict[str, tuple[str, list[str]]]:
    """key -> (`file:line`, fields) of a Kaldi table file; a key given twice is an error."""
    table: dict[str, tuple[str, list[str]]] = {}
    for where, line in _read_lines(path, what):
        parts = _fields(where, line, count, names, rest, optional)
        if parts[0] in table:
            first = table[parts[0]][0].rsplit(":", 1)[1]
            raise SpeechFileError(f"{where}: {parts[0]!r} already listed at line {first}")
        table[parts[0]] = (where, parts)
    return table


def _kaldi_audio(root: Path, where: str, utt: str, value: str) -> str:
    value = value.strip()
    if value.endswith("|"):
        raise SpeechFileError(f"{where}: {utt}: piped commands ('... |') are not supported: run the command once "
                              "to write the audio to a file and list that file's path in wav.scp")
    if re.search(r"\.ark:\d+$", value) or value.startswith(("ark:", "scp:")):
        raise SpeechFileError(f"{where}: {utt}: Kaldi archives ({value[:60]!r}) are not supported: list audio "
                              "files (wav, flac, ...) in wav.scp")
    if os.path.isabs(value) or not os.path.exists(root / value):  # os.path: False, never OSError, for odd names
        return value
    return str(root / value)


def read_kaldi_dir(path: PathLike) -> list[SpeechRecord]:
    """Read a Kaldi data folder (see the module docstring), in the order of `segments` (else `wav.scp`)."""
    root = Path(path)
    if not root.is_dir():
        raise SpeechFileError(f"{path}: Kaldi data folder not found")
    wavs = _kaldi_table(root / "wav.scp", 2, "utt path", "wav.scp", rest=True)
    audio = {rec: _kaldi_audio(root, where, rec, parts[1]) for rec, (where, parts) in wavs.items()}
    texts = {utt: parts[1].strip() if len(parts) > 1 else "" for utt, (_, parts) in
             _kaldi_table(root / "text", 2, "utt text", "text", rest=True, optional=True).items()}
    speakers = {u: p[1] for u, (_, p) in _kaldi_table(root / "utt2spk", 2, "utt spk", "utt2spk").items()} \
        if (root / "utt2spk").exists() else {}
    durations = {u: _duration(w, p[1]) for u, (w, p) in
                 _kaldi_table(root / "utt2dur", 2, "utt seconds", "utt2dur").items()} \
        if (root / "utt2dur").exists() else {}
    utterances: list[tuple[str, str, float, float | None, dict[str, Any]]] = []  # id, audio, start, end, extra
    no_audio: list[str] = []
    if (root / "segments").exists():
        for seg, (where, (_, rec, start_s, end_s)) in _kaldi_table(root / "segments", 4, "seg rec start end",
                                                                   "segments").items():
            start, end = _seconds(where, "start", start_s), _seconds(where, "end", end_s)
            if start < 0 or end != -1 and end <= start:
                raise SpeechFileError(f"{where}: {seg}: bad times (start {start_s}, end {end_s}): need 0 <= start "
                                      "< end, or end -1 for the end of the recording")
            if rec not in audio:
                no_audio.append(seg)
                continue
            utterances.append((seg, audio[rec], start, None if end == -1 else end, {"recording": rec}))
    else:
        utterances = [(utt, a, 0.0, None, {}) for utt, a in audio.items()]
    records, no_text = [], []
    for utt, wav, start, end, extra in utterances:
        if utt not in texts:
            no_text.append(utt)
            continue
        duration = durations.get(utt, None if end is None else end - start)
        records.append(SpeechRecord(utt, wav, texts[utt], duration, start, end, speakers.get(utt), extra))
    listed = {u for u, *_ in utterances} | set(no_audio)
    orphans = [u for u in texts if u not in listed]
    for ids, what in ((no_text, "have no transcript in text"), (no_audio, "name a recording missing from wav.scp"),
                      (orphans, "of text have no audio (not in segments / wav.scp)")):
        if ids:
            log.warning("%s: %d utterances %s and are skipped (first: %s)", path, len(ids), what, ", ".join(ids[:5]))
    if not records:
        raise SpeechFileError(f"{path}: no utterance has both audio and a transcript ({len(no_text)} without "
                              f"transcript, {len(orphans)} transcripts without audio)")
    return records


# ------------------------------------------------------------------------------------------------- LibriSpeech


def _is_librispeech_subset(folder: Path) -> bool:
    return next(iter(folder.glob("*/*/*.trans.txt")), None) is not None


def _librispeech_subset(folder: Path, seen: dict[str, str]) -> list[SpeechRecord]:
    """The records of one subset folder; `seen` (utterance id -> `file:line`) refuses an id given twice."""
    records = []
    for trans in sorted(folder.glob("*/*/*.trans.txt")):
        speaker, chapter = trans.parent.parent.name, trans.parent.name
        prefix = f"{speaker}-{chapter}-"
        for where, line in _read_lines(trans, "transcript file"):
            parts = line.split(maxsplit=1)
            if not parts[0].startswith(prefix) or len(parts[0]) == len(prefix):
                raise SpeechFileError(f"{where}: utterance id {parts[0]!r} does not start with {prefix!r} "
                                      f"(expected '{prefix}NNNN TRANSCRIPT')")
            if parts[0] in seen:
                raise SpeechFileError(f"{where}: utterance id {parts[0]!r} already used at {seen[parts[0]]}")
            seen[parts[0]] = where
            records.append(SpeechRecord(parts[0], str(trans.parent / f"{parts[0]}.flac"),
                                        parts[1].strip() if len(parts) > 1 else "", speaker=speaker,
                                        extra={"subset": folder.name, "chapter": chapter}))
    return records


def read_librispeech(root: PathLike, subsets: Iterable[str] | str | None = None) -> list[SpeechRecord]:
    """Read the LibriSpeech layout: `root` is a subset folder (e.g. .../LibriSpeech/train-clean-100), or the
    corpus folder together with `subsets` (e.g. ["train-clean-100", "train-clean-360"]). A corpus folder without
    `subsets` is an error listing the subsets it holds (mixing train and test by accident is worse)."""
    folder = Path(root)
    if not folder.is_dir():
        raise SpeechFileError(f"{root}: LibriSpeech folder not found")
    present = sorted(d.name for d in folder.iterdir() if d.is_dir() and _is_librispeech_subset(d))
    seen: dict[str, str] = {}
    if subsets is None:
        if _is_librispeech_subset(folder):
            return _librispeech_subset(folder, seen)
        if present:
            raise SpeechFileError(f"{root}: a LibriSpeech corpus folder: choose subsets=[...] among "
                                  f"{', '.join(present)}")
        raise SpeechFileError(f"{root}: no LibriSpeech layout (<speaker>/<chapter>/<speaker>-<chapter>.trans.txt)")
    wanted = [subsets] if isinstance(subsets, str) else list(dict.fromkeys(subsets))  # each subset once
    records = []
    for name in wanted:
        if name in present:
            records.extend(_librispeech_subset(folder / name, seen))
        elif folder.name == name and _is_librispeech_subset(folder):
            records.extend(_librispeech_subset(folder, seen))
        else:
            raise SpeechFileError(f"{root}: LibriSpeech subset {name!r} not found (present: "
                                  f"{', '.join(present) or 'none'})")
    return records


def read_speech(path: PathLike, **kw: Any) -> list[SpeechRecord]:
    """Any of the three formats: a `.jsonl` file, a folder holding `wav.scp` (Kaldi), a LibriSpeech folder (a
    subset, or the corpus folder with `subsets=`). Keyword arguments go to the chosen reader."""
    p = Path(path)
    if p.is_file() or p.suffix.lower() == ".jsonl":
        if p.suffix.lower() != ".jsonl":
            raise SpeechFileError(f"{path}: unknown speech corpus file type {p.suffix or '(no extension)'!r} "
                                  "(expected a .jsonl manifest, a Kaldi data folder or a LibriSpeech folder)")
        return read_jsonl_manifest(path, **kw)
    if (p / "wav.scp").is_file():
        return read_kaldi_dir(path, **kw)
    if p.is_dir() and (_is_librispeech_subset(p) or any(_is_librispeech_subset(d) for d in p.iterdir() if d.is_dir())):
        return read_librispeech(path, **kw)
    if not p.exists():
        raise SpeechFileError(f"{path}: not found")
    raise SpeechFileError(f"{path}: not a speech corpus (expected a .jsonl manifest, a Kaldi folder with wav.scp, "
                          "or a LibriSpeech folder)")


# ------------------------------------------------------------------------------------------------- checks

_REASONS = {
    "missing": "missing audio",
    "unreadable": "unreadable audio",
    "too_short": "shorter than min_duration",
    "too_long": "longer than max_duration",
    "charset": "with characters outside the charset",
}


@dataclass
class SpeechCheckReport:
    """What `check_speech_records` skipped: `counts[reason]` and the first `examples[reason]` ("id (detail)").
    Reasons: "missing", "unreadable", "too_short", "too_long", "charset". `source` (e.g. the manifest's path)
    starts the description."""

    total: int = 0
    kept: int = 0
    max_duration: float | None = None
    min_duration: float | None = None
    source: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_REASONS, 0))
    examples: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in _REASONS})

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())


def _audio_check(record: SpeechRecord) -> tuple[str | None, str, float | None]:
    """(reason or None, detail, duration) of one record's audio: existence always, header when duration unknown."""
    if not os.path.isfile(record.audio):
        return "missing", record.audio, None
    if record.duration is not None:
        return None, "", record.duration
    try:
        total = audio_duration(record.audio)
    except AudioLoadError as e:
        return "unreadable", e.reason, None
    end = total if record.end is None else min(record.end, total)
    if end <= record.offset:
        return "unreadable", f"segment starts at {record.offset:g} s, the audio lasts {total:.2f} s", None
    return None, "", end - record.offset


def check_speech_records(
    records: list[SpeechRecord], max_duration: float | None = None, charset: set[str] | None = None,
    max_examples: int = 3, num_threads: int = 8, min_duration: float | None = None, source: PathLike | None = None,
) -> tuple[list[SpeechRecord], SpeechCheckReport]:
    """Keep the records fit to train on; report the others by reason (never silently: a warning is logged).

    Skipped: audio files that do not exist ("missing"); unknown durations are read from the audio header (the
    kept records come back with `duration` filled in; a header that fails is "unreadable"); utterances shorter
    than `min_duration` s ("too_short": e.g. too short for the encoder to give one frame) or longer than
    `max_duration` s ("too_long"); transcripts with a character outside `charset` ("charset"; include " " in it
    when transcripts have spaces). The first reason found per record is counted. `source` names the corpus in
    the description. When some records are skipped and some kept, `describe_skipped(report)` is logged as a
    warning; when none is kept nothing is logged: the caller, left without data, says why in its error.
    """
    report = SpeechCheckReport(total=len(records), max_duration=max_duration, min_duration=min_duration,
                               source=None if source is None else str(source))
    with ThreadPoolExecutor(max_workers=max(1, min(num_threads, len(records) or 1))) as pool:
        audio = list(pool.map(_audio_check, records))
    good = []
    for record, (reason, detail, duration) in zip(records, audio):
        if reason is None and min_duration is not None and duration is not None and duration < min_duration:
            reason, detail = "too_short", f"{duration:.3g} s"
        if reason is None and max_duration is not None and duration is not None and duration > max_duration:
            reason, detail = "too_long", f"{duration:.1f} s"
        if reason is None and charset is not None:
            bad = sorted(set(record.text) - charset)
            if bad:
                reason, detail = "charset", repr("".join(bad))
        if reason is None:
            good.append(record if duration == record.duration else dataclasses.replace(record, duration=duration))
            continue
        report.counts[reason] += 1
        if len(report.examples[reason]) < max_examples:
            report.examples[reason].append(f"{record.id} ({detail})")
    report.kept = len(good)
    if report.skipped and good:
        log.warning("%s", describe_skipped(report))
    return good, report


def describe_skipped(report: SpeechCheckReport) -> str:
    """One line: how many utterances were skipped, per reason, with the first examples."""
    source = f"{report.source}: " if report.source else ""
    if not report.skipped:
        return f"{source}all {report.total} utterances kept"
    limits = {"too_short": report.min_duration, "too_long": report.max_duration}
    parts = []
    for reason, count in report.counts.items():
        if count:
            label = _REASONS[reason] + (f" ({limits[reason]:.3g} s)" if limits.get(reason) is not None else "")
            more = f", and {count - len(report.examples[reason])} more" if count > len(report.examples[reason]) else ""
            parts.append(f"{count} {label}: {', '.join(report.examples[reason])}{more}")
    return " ".join(f"{source}skipped {report.skipped} of {report.total} utterances: {'; '.join(parts)}".split())
