"""Fuzzing the readers of user files: given arbitrary bytes, arbitrary text lines or arbitrary JSON shaped like
the real thing, every reader either returns well-formed records or raises a one-line `ToolkitError` naming the
file; never another exception, never a hang.

Readers: JSONL speech manifests, Kaldi data folders (wav.scp, text, segments, utt2spk, utt2dur), LibriSpeech
transcripts, COCO / Karpathy / JSONL caption files, experiment configs (YAML) and model-bundle metadata.

The examples are drawn deterministically (`derandomize`), so CI sees the same 200 per reader every run; set
FUZZ_EXAMPLES=5000 for a longer, randomised local hunt.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.bundle import read_bundle_config
from toolkit.config import load_config
from toolkit.data import CaptionRecord, read_captions, read_coco, read_jsonl, read_karpathy
from toolkit.data.speech import SpeechRecord, read_jsonl_manifest, read_kaldi_dir, read_librispeech
from toolkit.errors import ToolkitError
from toolkit.tasks.asr import AsrExperiment

_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
fuzz = settings(max_examples=_EXAMPLES, deadline=None, derandomize="FUZZ_EXAMPLES" not in os.environ,
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HANG_SECONDS = 10


@contextlib.contextmanager
def bounded(seconds: float = HANG_SECONDS):
    """Fail (TimeoutError, not a ToolkitError) if the block runs longer than `seconds`."""
    def hung(signum, frame):
        raise TimeoutError(f"reader still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_or_refuse(reader, path: Path, *args, **kwargs):
    """`reader(path)`, or None when it raised a one-line `ToolkitError` naming `path` (anything else fails)."""
    with bounded():
        try:
            return reader(path, *args, **kwargs)
        except ToolkitError as e:
            message = str(e)
            assert "\n" not in message, message
            assert str(path) in message, message
            return None


# ---------------------------------------------------------------------------------------------- strategies
# Each file is drawn from a structured strategy (mostly well-formed, so that accepted records are common and their
# invariants are checked), from a loose one (the right keys holding anything), or as arbitrary bytes.

numbers = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(min_value=-(10**400), max_value=10**400))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
# a value a field might plausibly hold, or anything at all
field = st.one_of(st.sampled_from(["a.wav", "", " ", "x/y.flac", "/abs/b.wav", "0", "héllo wörld", "a.png"]),
                  numbers, json_values)
paths = st.one_of(st.sampled_from(["a.wav", "x/y.flac", "/abs/b.wav", "ü ber.wav", "../up.mp3"]),
                  st.text(min_size=1, max_size=10))
seconds = st.floats(min_value=0.0, max_value=600.0)


def jsonl_lines(objects) -> st.SearchStrategy[bytes]:
    """Lines that are JSON objects (mostly), broken JSON (a prefix of one) or any text, joined by \\n / \\r\\n."""
    dumped = objects.map(json.dumps)
    line = st.one_of(dumped, dumped, dumped, st.tuples(dumped, st.integers(0, 40)).map(lambda t: t[0][: t[1]]),
                     st.text(max_size=40), st.just(""))
    return st.tuples(st.lists(line, max_size=6), st.sampled_from(["\n", "\r\n"])).map(
        lambda t: t[1].join(t[0]).encode("utf-8", "surrogatepass"))


def files(structured: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """The structured content (mostly), arbitrary bytes, or the structured content with a byte spliced in."""
    spliced = st.tuples(structured, st.integers(0, 400), st.binary(min_size=1, max_size=2)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1]:])
    return st.one_of(structured, structured, structured, st.binary(max_size=300), spliced)


def lines_file(line: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """A text file of `line`s, now and then a line of anything."""
    any_line = st.one_of(line, line, line, st.text(max_size=30))
    return files(st.lists(any_line, max_size=5).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")))


speech_objects = st.one_of(
    st.fixed_dictionaries({"audio": paths, "text": st.text(max_size=15)}, optional={
        "id": st.one_of(st.text(max_size=6), st.integers(0, 9), field), "duration": st.one_of(seconds, field),
        "offset": st.one_of(seconds, field), "end": st.one_of(st.none(), seconds, field),
        "speaker": st.one_of(st.text(max_size=4), st.integers(), field), "voice": json_values}),
    st.fixed_dictionaries({}, optional={k: field for k in (
        "audio", "audio_filepath", "text", "duration", "offset", "end", "id", "speaker")}),
)
caption_objects = st.one_of(
    st.fixed_dictionaries({"image": paths, "captions": st.lists(st.text(max_size=12), max_size=3)},
                          optional={"id": st.one_of(st.text(max_size=4), st.integers(), field),
                                    "split": st.one_of(st.sampled_from(["train", "val"]), field)}),
    st.fixed_dictionaries({}, optional={k: field for k in ("image", "captions", "id", "split")}),
)


words = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=15)
token = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Z")), min_size=1, max_size=6)


def text_lines(lines: list[str]) -> bytes:
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@st.composite
def speech_manifest(draw) -> bytes:
    """A well-formed JSONL speech manifest (distinct ids; segments with end > offset)."""
    rows = []
    for i in range(draw(st.integers(0, 5))):
        row = {"audio": draw(paths), "text": draw(words)}
        row.update(draw(st.fixed_dictionaries({}, optional={
            "id": st.just(f"u{i}"), "duration": st.floats(0.01, 600), "offset": seconds,
            "speaker": st.one_of(token, st.integers()), "voice": json_values})))
        row.setdefault("id", f"u{i}")
        if draw(st.booleans()):
            row["end"] = draw(st.one_of(st.none(), st.floats(0.01, 60).map(lambda d: row.get("offset", 0.0) + d)))
        rows.append(row)
    return text_lines([json.dumps(r) for r in rows])


@st.composite
def kaldi_folder(draw) -> dict[str, bytes]:
    """A well-formed Kaldi data folder: wav.scp, text, and maybe segments, utt2spk, utt2dur."""
    recordings = draw(st.lists(token, min_size=1, max_size=3, unique=True))
    folder = {"wav.scp": text_lines([f"{r} {draw(paths)}" for r in recordings])}
    utterances = recordings
    if draw(st.booleans()):
        segments = []
        for r in recordings:
            for k in range(draw(st.integers(0, 2))):
                start = draw(seconds)
                end = draw(st.one_of(st.just(-1.0), st.floats(0.01, 60).map(lambda d: start + d)))
                segments.append((f"{r}-{k}", r, start, end))
        folder["segments"] = text_lines([f"{u} {r} {a} {b}" for u, r, a, b in segments])
        utterances = [u for u, *_ in segments]
    with_text = draw(st.lists(st.sampled_from(utterances + ["orphan"]), unique=True))
    folder["text"] = text_lines([f"{u} {draw(words)}" for u in with_text])
    if draw(st.booleans()):
        folder["utt2spk"] = text_lines([f"{u} {draw(token)}" for u in with_text])
    if draw(st.booleans()):
        folder["utt2dur"] = text_lines([f"{u} {draw(st.floats(0.01, 600))}" for u in with_text])
    return folder


@st.composite
def librispeech_transcript(draw) -> bytes:
    numbers_ = draw(st.lists(st.integers(0, 9999), max_size=5, unique=True))
    return text_lines([f"19-198-{n:04d} {draw(words)}" for n in numbers_])


@st.composite
def caption_manifest(draw) -> bytes:
    rows = [{"image": draw(paths), "captions": draw(st.lists(words, max_size=3)), "id": f"i{i}",
             **draw(st.fixed_dictionaries({}, optional={"split": st.sampled_from(["train", "val"])}))}
            for i in range(draw(st.integers(0, 5)))]
    return text_lines([json.dumps(r) for r in rows])


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def check_speech_records(records) -> None:
    assert isinstance(records, list)
    ids = [r.id for r in records]
    assert len(set(ids)) == len(ids)
    for r in records:
        assert isinstance(r, SpeechRecord)
        assert isinstance(r.id, str) and isinstance(r.audio, str) and r.audio.strip() and isinstance(r.text, str)
        assert isinstance(r.offset, float) and math.isfinite(r.offset) and r.offset >= 0
        assert r.end is None or (math.isfinite(r.end) and r.end > r.offset)
        assert r.duration is None or (math.isfinite(r.duration) and r.duration > 0)
        assert r.speaker is None or isinstance(r.speaker, str)


def check_caption_records(records) -> None:
    assert isinstance(records, list)
    for r in records:
        assert isinstance(r, CaptionRecord)
        assert isinstance(r.image, str) and isinstance(r.image_id, str)
        assert isinstance(r.captions, list) and all(isinstance(c, str) for c in r.captions)
        assert r.split is None or isinstance(r.split, str)


# ------------------------------------------------------------------------------------------------- speech


@fuzz
@given(files(st.one_of(speech_manifest(), jsonl_lines(speech_objects))))
def test_jsonl_speech_manifest(data):
    with tempfile.TemporaryDirectory() as tmp:
        records = read_or_refuse(read_jsonl_manifest, write(Path(tmp), "m.jsonl", data))
        if records is not None:
            check_speech_records(records)


ids = st.sampled_from(["u1", "u2", "r1", "r1-a", "x"])
number_text = st.one_of(seconds.map(str), st.sampled_from(["0", "-1", "1e999", "nan", "inf", "abc", "1_0", ""]))
kaldi_files = {
    "wav.scp": lines_file(st.tuples(ids, st.one_of(paths, st.sampled_from(["sox a.wav |", "f.ark:12", "ark:-"])))
                          .map(" ".join)),
    "text": lines_file(st.tuples(ids, st.text(max_size=12)).map(" ".join)),
    "segments": lines_file(st.tuples(ids, ids, number_text, number_text).map(" ".join)),
    "utt2spk": lines_file(st.tuples(ids, st.text(min_size=1, max_size=4)).map(" ".join)),
    "utt2dur": lines_file(st.tuples(ids, number_text).map(" ".join)),
}


@fuzz
@given(st.one_of(kaldi_folder(), kaldi_folder(), st.fixed_dictionaries(
    {k: kaldi_files[k] for k in ("wav.scp", "text")},
    optional={k: kaldi_files[k] for k in ("segments", "utt2spk", "utt2dur")})))
def test_kaldi_data_folder(contents):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        (folder / "a.wav").write_bytes(b"")  # a relative path that exists
        for name, data in contents.items():
            write(folder, name, data)
        records = read_or_refuse(read_kaldi_dir, folder)
        if records is not None:
            assert records  # an empty result is refused, naming the folder
            check_speech_records(records)


@fuzz
@given(st.one_of(files(librispeech_transcript()), lines_file(st.tuples(st.sampled_from(
    ["19-198-0000", "19-198-0001", "19-198-", "19-19", "84-121-0000"]), st.text(max_size=15)).map(" ".join))))
def test_librispeech_transcripts(data):
    with tempfile.TemporaryDirectory() as tmp:
        chapter = Path(tmp) / "dev-clean" / "19" / "198"
        chapter.mkdir(parents=True)
        write(chapter, "19-198.trans.txt", data)
        records = read_or_refuse(read_librispeech, Path(tmp) / "dev-clean")
        if records is not None:
            check_speech_records(records)


# ------------------------------------------------------------------------------------------------ captions

@st.composite
def coco_files(draw) -> dict:
    """A COCO captions file whose images have distinct ids and whose annotations name them."""
    image_ids = draw(st.lists(st.one_of(st.integers(0, 99), st.text(max_size=3)), max_size=4, unique=True))
    images = [{"id": i, "file_name": draw(paths), **draw(st.fixed_dictionaries({}, optional={
        "split": st.sampled_from(["train", "val", "test"]), "original_id": st.text(max_size=3)}))}
        for i in image_ids]
    annotations = [{"image_id": draw(st.sampled_from(image_ids)), "caption": draw(st.text(max_size=12))}
                   for _ in range(draw(st.integers(0, 4)))] if image_ids else []
    return {"images": images, "annotations": annotations}


karpathy_files = st.fixed_dictionaries({"images": st.lists(st.fixed_dictionaries(
    {"filename": paths, "sentences": st.lists(st.fixed_dictionaries({"raw": st.text(max_size=12)}), max_size=3)},
    optional={"filepath": st.sampled_from(["", "val2014", "/abs"]), "cocoid": st.integers(0, 99),
              "split": st.sampled_from(["train", "val", "test", "restval", "other"])}), max_size=4)})
loose_coco = st.fixed_dictionaries({}, optional={
    "images": st.one_of(st.lists(st.fixed_dictionaries({}, optional={
        k: field for k in ("id", "file_name", "split", "original_id")}), max_size=4), field),
    "annotations": st.one_of(st.lists(st.fixed_dictionaries({}, optional={
        "image_id": st.one_of(st.integers(0, 3), field), "caption": field}), max_size=4), field)})
loose_karpathy = st.fixed_dictionaries({}, optional={"images": st.one_of(st.lists(st.fixed_dictionaries({}, optional={
    "filename": field, "filepath": field, "split": field, "cocoid": field, "imgid": field, "id": field,
    "sentences": st.one_of(st.lists(st.fixed_dictionaries({}, optional={"raw": field}), max_size=3), field)}),
    max_size=4), field)})
json_file = st.one_of(coco_files(), karpathy_files, coco_files(), karpathy_files, loose_coco, loose_karpathy,
                      json_values).map(lambda v: json.dumps(v).encode())


@fuzz
@given(files(json_file), st.sampled_from([read_coco, read_karpathy, read_captions]),
       st.sampled_from([None, ["train"], ["val", "restval"], ["typo"]]))
def test_coco_and_karpathy_files(data, reader, splits):
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "captions.json", data)
        records = read_or_refuse(reader, path) if reader is read_coco else read_or_refuse(reader, path, None, splits)
        if records is not None:
            check_caption_records(records)


@fuzz
@given(files(st.one_of(caption_manifest(), jsonl_lines(caption_objects))), st.sampled_from([None, ["train"]]))
def test_jsonl_caption_file(data, splits):
    with tempfile.TemporaryDirectory() as tmp:
        records = read_or_refuse(read_jsonl, write(Path(tmp), "captions.jsonl", data), None, splits)
        if records is not None:
            check_caption_records(records)


# ------------------------------------------------------------------------------- configs and bundle metadata

config_tree = st.fixed_dictionaries({}, optional={
    "task": st.one_of(st.just("asr"), field),
    "data": st.one_of(st.fixed_dictionaries({"train": st.just("t.jsonl"), "valid": st.just("v.jsonl")},
                                            optional={"max_duration": field, "num_workers": field}), field),
    "train": st.one_of(st.fixed_dictionaries({}, optional={"max_steps": field, "lr": field, "betas": field,
                                                           "schedule": field, "amp": field}), field),
    "model": st.one_of(st.fixed_dictionaries({}, optional={
        "d_model": field, "ctc": field, "decoder": st.one_of(st.none(), json_values),
        "encoder": st.one_of(st.fixed_dictionaries({"name": st.sampled_from(["conformer", "timm", "nope"])},
                                                   optional={"num_layers": field, "backbone": field}), field)}),
        field),
    "decoding": json_values, "ctc_weight": field,
})


@fuzz
@given(files(st.one_of(config_tree.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode()),
                       st.text(max_size=60).map(str.encode))))
def test_experiment_config(data):
    with tempfile.TemporaryDirectory() as tmp:
        config = read_or_refuse(lambda path: load_config(AsrExperiment, path), write(Path(tmp), "conf.yaml", data))
        if config is not None:
            assert isinstance(config, AsrExperiment) and config.task == "asr"


bundle_meta = st.fixed_dictionaries(
    {"format": st.sampled_from(["toolkit-model", "other"]), "format_version": st.sampled_from([1, 2, "1"])},
    optional={"files": st.one_of(st.dictionaries(st.text(max_size=12), field, max_size=3), field),
              "model": st.one_of(st.just({"vocab_size": 10}), field),
              "info": st.one_of(st.fixed_dictionaries({}, optional={
                  "task": field, "image_size": field, "sample_rate": field,
                  "decoding": st.one_of(st.fixed_dictionaries({}, optional={
                      "ctc_weight": field, "max_length_ratio": field, "max_length": field}), field)}), field)})


@fuzz
@given(files(st.one_of(bundle_meta, json_values).map(lambda v: json.dumps(v).encode())))
def test_bundle_metadata(data):
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), "config.json", data)
        meta = read_or_refuse(read_bundle_config, Path(tmp))
        if meta is not None:
            assert isinstance(meta["files"], dict) and isinstance(meta["model"], dict)
            assert isinstance(meta["info"], dict) and isinstance(meta["info"].get("decoding", {}), dict)
            for name in meta["files"]:
                assert "/" not in name and name not in ("", ".", "..")


def test_hang_guard_fires():
    """The guard above really stops a reader that never returns."""
    with pytest.raises(TimeoutError):
        with bounded(0.05):
            while True:
                pass


# ------------------------------------------------------------------------- well-formed files are accepted
# The tests above allow a refusal; these draw only files that the format allows and check that every record comes
# back, in order, with its id, text and optional fields (a reader that refused everything would fail them).

# An id or a speaker: one Kaldi token (no whitespace) of letters of any script, digits and punctuation.
tokens = st.text(st.characters(whitelist_categories=("L", "N", "Pd", "Pc", "Po")), min_size=1, max_size=10)
# A transcript or a caption: any printable text, spaces (of any kind) and punctuation included, on one line.
one_line = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp")), max_size=25)
durations = st.floats(0.01, 3600, allow_nan=False, allow_infinity=False)
newlines = st.sampled_from(["\n", "\r\n"])


def lines_bytes(lines: list[str], newline: str, bom: bool) -> bytes:
    return (("\ufeff" if bom else "") + "".join(line + newline for line in lines)).encode()


@st.composite
def good_speech_manifests(draw) -> tuple[bytes, list[dict]]:
    """A JSONL manifest of distinct ids (explicit or the audio path) and the records it describes."""
    n = draw(st.integers(1, 8))
    names = draw(st.lists(tokens, min_size=n, max_size=n, unique=True))
    lines, expected = [], []
    for i, name in enumerate(names):
        obj = {draw(st.sampled_from(["audio", "audio_filepath"])): draw(st.sampled_from(
            [f"wav/{name}.wav", f"/corpus/{name} x.flac"])), "text": draw(one_line)}
        audio = next(iter(obj.values()))
        optional = draw(st.fixed_dictionaries({}, optional={
            "id": st.one_of(st.just(f"id-{name}"), st.just(i)), "duration": durations, "offset": durations,
            "speaker": st.one_of(tokens, st.integers(0, 99)), "lang": st.sampled_from(["en", "fr"])}))
        if "offset" in optional and "duration" not in optional and draw(st.booleans()):
            optional["end"] = optional["offset"] + draw(durations)
        obj.update(optional)
        offset = optional.get("offset", 0.0)
        end = optional.get("end", offset + optional["duration"] if "offset" in optional and "duration" in optional
                           else None)
        uid = str(optional["id"]) if "id" in optional else audio + (f"@{offset:g}" if offset else "")
        expected.append({"id": uid, "audio": audio, "text": obj["text"],
                         "duration": optional.get("duration"), "offset": offset, "end": end,
                         "speaker": None if "speaker" not in optional else str(optional["speaker"]),
                         "extra": {"lang": optional["lang"]} if "lang" in optional else {}})
        lines.append(json.dumps(obj, ensure_ascii=draw(st.booleans())))
        if draw(st.integers(0, 4)) == 0:
            lines.append(draw(st.sampled_from(["", "  ", "\t"])))  # blank lines are skipped
    return lines_bytes(lines, draw(newlines), draw(st.booleans())), expected


@fuzz
@given(good_speech_manifests())
def test_well_formed_speech_manifests_are_read_whole(manifest):
    data, expected = manifest
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "m.jsonl", data)
        with bounded():
            records = read_jsonl_manifest(path)
        assert len(records) == len(expected)
        for r, e in zip(records, expected):
            assert (r.id, r.text, r.duration, r.offset, r.end, r.speaker, r.extra) == \
                   (e["id"], e["text"], e["duration"], e["offset"], e["end"], e["speaker"], e["extra"])
            assert r.audio == (e["audio"] if e["audio"].startswith("/") else str(Path(tmp) / e["audio"]))


@st.composite
def good_kaldi_folders(draw) -> tuple[dict[str, bytes], list[tuple]]:
    """A Kaldi data folder (wav.scp, text; optional segments, utt2spk, utt2dur; some utterances without a
    transcript and some transcripts without audio, which are skipped) and the (id, audio, text, speaker,
    duration, offset, end) of every record it holds, in file order."""
    keys = draw(st.lists(tokens, min_size=3, max_size=14, unique=True))
    newline, bom = draw(newlines), draw(st.booleans())
    use_segments = draw(st.booleans())
    n_rec = draw(st.integers(1, max(1, len(keys) // 2)))
    recordings, utts = keys[:n_rec], keys[n_rec:] if use_segments else keys
    audio = {r: f"/corpus/{r}.wav" if draw(st.booleans()) else f"wav/{r} take.flac" for r in recordings} \
        if use_segments else {u: f"/corpus/{u}.wav" if draw(st.booleans()) else f"wav/{u} take.flac" for u in utts}
    texts = {u: draw(one_line).strip() for u in utts}
    transcribed = [u for u in utts if draw(st.integers(0, 5)) > 0] or utts[:1]
    files, expected = {}, []
    speakers = {u: draw(tokens) for u in utts} if draw(st.booleans()) else {}
    given_durations = {u: draw(durations) for u in utts} if draw(st.booleans()) else {}
    if use_segments:
        segments = {}
        for u in utts:
            start = draw(st.floats(0, 100).map(lambda x: round(x, 2)))
            end = -1.0 if draw(st.integers(0, 4)) == 0 else round(start + draw(st.floats(0.01, 30)), 2) + 0.01
            segments[u] = (draw(st.sampled_from(recordings)), start, end)
        files["segments"] = lines_bytes([f"{u} {r} {s!r} {e!r}" for u, (r, s, e) in segments.items()], newline, bom)
        for u, (r, s, e) in segments.items():
            if u in transcribed:
                end = None if e == -1 else e
                expected.append((u, audio[r], texts[u], speakers.get(u),
                                 given_durations.get(u, None if end is None else end - s), s, end))
    else:
        for u in utts:
            if u in transcribed:
                expected.append((u, audio[u], texts[u], speakers.get(u), given_durations.get(u), 0.0, None))
    orphans = [f"~orphan{i}" for i in range(draw(st.integers(0, 2)))]  # transcripts without audio
    text_lines = [f"{u}{draw(st.sampled_from([' ', chr(9), '  ']))}{texts[u]}" for u in transcribed]
    text_lines += [f"{o} {draw(one_line)}" for o in orphans]
    files["wav.scp"] = lines_bytes([f"{k} {a}" for k, a in audio.items()], newline, bom)
    files["text"] = lines_bytes(draw(st.permutations(text_lines)), newline, bom)
    if speakers:
        files["utt2spk"] = lines_bytes([f"{u} {s}" for u, s in speakers.items()], newline, False)
    if given_durations:
        files["utt2dur"] = lines_bytes([f"{u} {d!r}" for u, d in given_durations.items()], newline, False)
    return files, expected


@fuzz
@given(good_kaldi_folders())
def test_well_formed_kaldi_folders_are_read_whole(folder_and_expected):
    contents, expected = folder_and_expected
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        for name, data in contents.items():
            write(folder, name, data)
        with bounded():
            records = read_kaldi_dir(folder)
        got = [(r.id, r.audio, r.text, r.speaker, r.duration, r.offset, r.end) for r in records]
        assert got == expected


@st.composite
def good_coco_files(draw) -> tuple[bytes, list[tuple]]:
    """A COCO captions file (distinct integer or string image ids; annotations in any order, some images with
    none) and the (file name, image id, captions in file order, split) of every image."""
    image_ids = draw(st.lists(st.one_of(st.integers(0, 10**6), tokens), min_size=1, max_size=6, unique=True))
    images, expected = [], []
    for i, key in enumerate(image_ids):
        entry = {"id": key, "file_name": f"img/{i}-{draw(tokens)}.jpg",
                 **draw(st.fixed_dictionaries({}, optional={"split": st.sampled_from(["train", "val", "test"]),
                                                            "original_id": tokens, "width": st.integers(1, 999)}))}
        images.append(entry)
        expected.append([entry["file_name"], str(entry.get("original_id", key)), [], entry.get("split")])
    annotations = []
    for _ in range(draw(st.integers(0, 12))):
        i = draw(st.integers(0, len(image_ids) - 1))
        caption = draw(one_line)
        annotations.append({"id": len(annotations), "image_id": image_ids[i], "caption": caption})
        expected[i][2].append(caption)
    data = json.dumps({"info": {}, "images": images, "annotations": annotations},
                      ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1]))).encode()
    return data, [tuple(e) for e in expected]


@fuzz
@given(good_coco_files(), st.sampled_from([read_coco, read_captions]))
def test_well_formed_coco_files_are_read_whole(coco, reader):
    data, expected = coco
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "captions.json", data)
        with bounded():
            records = reader(path)
        got = [(r.image, r.image_id, r.captions, r.split) for r in records]
        assert got == [(str(Path(tmp).joinpath(name)), *rest) for name, *rest in expected]
