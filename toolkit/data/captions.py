"""Caption corpora: COCO, Karpathy-split and JSONL files read into `CaptionRecord`s, written back, converted.

    records = read_captions("captions_train2014.json")             # COCO; image paths resolved against its folder
    records = read_captions("dataset_coco.json", image_root="coco", splits={"train", "restval"})   # Karpathy
    records = read_captions("train.jsonl")                          # {"image": ..., "captions": [...]} per line
    convert_captions("dataset_coco.json", "val.jsonl", to="jsonl", image_root="coco", splits={"val"})

Caption normalisation (`normalize_caption`) is `toolkit.text.normalize.normalize_text`, the one rule for training
targets and for evaluation: "A Dog's  ball, (well-known)!" -> "a dog's ball well known".

Files are read as UTF-8; every problem in a file is a one-line `CaptionFileError` naming the file and the line
(JSONL) or field path (JSON, e.g. annotations[12].caption). Writers create parent folders and write atomically
(`toolkit.files.write_atomic`: a temporary file in the same folder, then `os.replace`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from toolkit.errors import ToolkitError
from toolkit.files import write_atomic
from toolkit.text.normalize import normalize_text

PathLike = str | os.PathLike[str]
KARPATHY_SPLITS = frozenset({"train", "val", "test", "restval"})


class CaptionFileError(ToolkitError):
    """A caption file that cannot be read: bad JSON, a missing field, a wrong type, an unknown id, bad bytes."""


@dataclass
class CaptionRecord:
    """One image and its reference captions; `image` is the path as resolved (image root joined with the name)."""

    image: str
    captions: list[str] = field(default_factory=list)
    image_id: str = ""
    split: str | None = None


normalize_caption = normalize_text  # captions are normalised as every other text (`toolkit.text.normalize`)


# ---------------------------------------------------------------------------------------------- helpers


def _fail(path: PathLike, where: str, problem: str) -> CaptionFileError:
    return CaptionFileError(" ".join(f"{path}: {where}: {problem}".split()) if where else f"{path}: {problem}")


def _read_bytes(path: PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CaptionFileError(f"{path}: caption file not found") from None
    except OSError as e:
        raise CaptionFileError(f"{path}: cannot be read ({e.strerror or e})") from None


def _load_json(path: PathLike) -> Any:
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CaptionFileError(f"{path}: not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CaptionFileError(f"{path}: line {e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
    except (ValueError, RecursionError) as e:
        raise CaptionFileError(f"{path}: not valid JSON ({json_failure(e)})") from None


def json_failure(e: ValueError | RecursionError) -> str:
    """Why `json.loads` refused a text that is not a `JSONDecodeError` (those carry their own line and column)."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return " ".join(str(e).split(":")[0].split())  # e.g. "Exceeds the limit (4300 digits) for integer string ..."


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _get(path: PathLike, obj: dict[str, Any], key: str, where: str, kind: str, required: bool = True) -> Any:
    """`obj[key]` checked to be of `kind` ("str", "id", "list", "object", "split"); `where` names `obj`."""
    name = f"{where}.{key}" if where else key
    if key not in obj or (obj[key] is None and not required):
        if required:
            raise _fail(path, name, "missing")
        return None
    value = obj[key]
    ok = {
        "str": isinstance(value, str),
        "id": isinstance(value, (str, int)) and not isinstance(value, bool),
        "list": isinstance(value, list),
        "object": isinstance(value, dict),
        "split": isinstance(value, str),
    }[kind]
    if not ok:
        wanted = {"str": "a string", "id": "an integer or a string", "list": "a list", "object": "an object",
                  "split": "a string"}[kind]
        raise _fail(path, name, f"must be {wanted}, got {_type_name(value)}")
    return value


def _objects(path: PathLike, obj: dict[str, Any], key: str, where: str = "") -> list[dict[str, Any]]:
    items = _get(path, obj, key, where, "list")
    prefix = f"{where}.{key}" if where else key
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _fail(path, f"{prefix}[{i}]", f"must be an object, got {_type_name(item)}")
    return items


def _join(root: Path, *names: str) -> str:
    return str(root.joinpath(*[n for n in names if n]))


def _split_filter(path: PathLike, records: list[CaptionRecord], splits: Iterable[str] | None) -> list[CaptionRecord]:
    """Keep records whose split is in `splits`; a requested non-standard split that never occurs is an error."""
    if splits is None:
        return records
    wanted = {splits} if isinstance(splits, str) else set(splits)
    present = {r.split for r in records if r.split is not None}
    typos = sorted(s for s in wanted - present if s not in KARPATHY_SPLITS)
    kept = [r for r in records if r.split in wanted]
    if typos or (records and not kept):
        missing = ", ".join(typos or sorted(wanted))
        raise _fail(path, "", f"split(s) {missing} not found (present: {', '.join(sorted(present)) or 'none'})")
    return kept


def _relative(image: str, root: Path) -> str:
    """`image` relative to `root` when it lies under it, else its absolute path (always with / separators)."""
    absolute = Path(os.path.abspath(image))
    try:
        return absolute.relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return absolute.as_posix()


def _int_id(image_id: str) -> int | None:
    return int(image_id) if re.fullmatch(r"-?[1-9][0-9]*|0", image_id) else None


# ------------------------------------------------------------------------------------------------ readers


def _coco(path: PathLike, data: Any, image_root: PathLike | None) -> list[CaptionRecord]:
    if not isinstance(data, dict):
        raise _fail(path, "", f"a COCO file is a JSON object, got {_type_name(data)}")
    root = Path(image_root) if image_root is not None else Path(path).parent
    records: list[CaptionRecord] = []
    by_id: dict[Any, CaptionRecord] = {}
    for i, img in enumerate(_objects(path, data, "images")):
        where = f"images[{i}]"
        key = _get(path, img, "id", where, "id")
        if key in by_id:
            raise _fail(path, f"{where}.id", f"{key!r} appears twice")
        original = _get(path, img, "original_id", where, "id", required=False)
        record = CaptionRecord(
            image=_join(root, _get(path, img, "file_name", where, "str")),
            captions=[],
            image_id=str(original if original is not None else key),
            split=_get(path, img, "split", where, "split", required=False),
        )
        by_id[key] = record
        records.append(record)
    for j, ann in enumerate(_objects(path, data, "annotations") if "annotations" in data else []):
        where = f"annotations[{j}]"
        key = _get(path, ann, "image_id", where, "id")
        caption = _get(path, ann, "caption", where, "str")
        if key not in by_id:
            raise _fail(path, f"{where}.image_id", f"{key!r} is not the id of any entry of images")
        by_id[key].captions.append(caption)
    return records


def read_coco(json_path: PathLike, image_root: PathLike | None = None) -> list[CaptionRecord]:
    """Read a COCO captions file (`images[].{id, file_name}`, `annotations[].{image_id, caption}`).

    `image_root` defaults to the JSON file's folder. Images without annotations are kept with `captions=[]`
    (test sets for inference). An optional `images[].split` string becomes `CaptionRecord.split`, and an optional
    `images[].original_id` (written by `write_coco` for non-integer ids) becomes `image_id`. A file without
    "annotations" (COCO's image_info_test files) reads as images without captions.
    """
    return _coco(json_path, _load_json(json_path), image_root)


def _karpathy(path: PathLike, data: Any, image_root: PathLike | None) -> list[CaptionRecord]:
    if not isinstance(data, dict):
        raise _fail(path, "", f"a Karpathy split file is a JSON object, got {_type_name(data)}")
    root = Path(image_root) if image_root is not None else Path(path).parent
    records = []
    for i, img in enumerate(_objects(path, data, "images")):
        where = f"images[{i}]"
        filename = _get(path, img, "filename", where, "str")
        filepath = _get(path, img, "filepath", where, "str", required=False) or ""
        captions = []
        for j, sentence in enumerate(_objects(path, img, "sentences", where)):
            captions.append(_get(path, sentence, "raw", f"{where}.sentences[{j}]", "str"))
        ids = [_get(path, img, k, where, "id", required=False) for k in ("id", "cocoid", "imgid")]
        image_id = next((str(x) for x in ids if x is not None), filename)
        split = _get(path, img, "split", where, "split", required=False)
        records.append(CaptionRecord(_join(root, filepath, filename), captions, image_id, split))
    return records


def read_karpathy(
    json_path: PathLike, image_root: PathLike | None = None, splits: Iterable[str] | None = None
) -> list[CaptionRecord]:
    """Read a Karpathy split file (`images[].{filepath?, filename, cocoid|imgid, split, sentences[].raw}`).

    Image path = image_root / filepath / filename (`image_root` defaults to the JSON file's folder); the caption
    text is `raw`; `image_id` is `id` (written by `write_karpathy`), else `cocoid`, else `imgid`, else the file
    name. `splits` keeps only those splits (e.g. {"train", "restval"}); a non-standard split name that never occurs
    is an error (a typo), as is a filter that keeps nothing.
    """
    return _split_filter(json_path, _karpathy(json_path, _load_json(json_path), image_root), splits)


def read_jsonl(
    path: PathLike, image_root: PathLike | None = None, splits: Iterable[str] | None = None
) -> list[CaptionRecord]:
    """Read a JSONL manifest: one `{"image": path, "captions": [str, ...]}` object per line (+ optional "id", "split").

    Relative image paths resolve against `image_root` (default: the manifest's folder); blank lines are skipped;
    other keys are ignored; `image_id` defaults to the "image" value as written. A broken line, a missing field,
    a wrong type or non-UTF-8 bytes raise a one-line `CaptionFileError` naming `file:line` (and the field).
    """
    data = _read_bytes(path)
    root = Path(image_root) if image_root is not None else Path(path).parent
    records = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{path}:{n}"
        try:
            line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise CaptionFileError(f"{where}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})") from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise CaptionFileError(f"{where}: not valid JSON ({e.msg}, column {e.colno})") from None
        except (ValueError, RecursionError) as e:
            raise CaptionFileError(f"{where}: not valid JSON ({json_failure(e)})") from None
        if not isinstance(obj, dict):
            raise CaptionFileError(f"{where}: expected a JSON object, got {_type_name(obj)}")
        image = _get(where, obj, "image", "", "str")
        captions = _get(where, obj, "captions", "", "list")
        for i, caption in enumerate(captions):
            if not isinstance(caption, str):
                raise _fail(where, f"captions[{i}]", f"must be a string, got {_type_name(caption)}")
        image_id = _get(where, obj, "id", "", "id", required=False)
        split = _get(where, obj, "split", "", "split", required=False)
        records.append(CaptionRecord(_join(root, image), list(captions), str(image if image_id is None else image_id),
                                     split))
    return _split_filter(path, records, splits)


def read_captions(
    path: PathLike, image_root: PathLike | None = None, splits: Iterable[str] | None = None
) -> list[CaptionRecord]:
    """Read any of the three formats: `.jsonl` -> JSONL; `.json` with "annotations" (or images[].file_name) ->
    COCO; `.json` whose images carry "sentences" -> Karpathy. `splits` filters on `CaptionRecord.split` in every
    format."""
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path, image_root, splits)
    if suffix != ".json":
        raise CaptionFileError(f"{path}: unknown caption file type {suffix or '(no extension)'!r} "
                               "(expected .json for COCO / Karpathy, or .jsonl)")
    data = _load_json(path)
    images = data.get("images") if isinstance(data, dict) else None
    entries = [i for i in images if isinstance(i, dict)] if isinstance(images, list) else []
    if isinstance(data, dict) and "annotations" in data or any("file_name" in i for i in entries):
        return _split_filter(path, _coco(path, data, image_root), splits)
    if any("sentences" in i for i in entries):
        return _split_filter(path, _karpathy(path, data, image_root), splits)
    raise CaptionFileError(f"{path}: neither COCO (no top-level 'annotations', no images[].file_name) nor Karpathy "
                           "(no images[].sentences)")


# ------------------------------------------------------------------------------------------------ writers


def _ids(records: list[CaptionRecord]) -> tuple[list[int], bool]:
    """COCO/Karpathy integer ids: the records' own when all are distinct integers, else 1..N (`False`)."""
    ints = [_int_id(r.image_id) for r in records]
    if all(i is not None for i in ints) and len(set(ints)) == len(ints):
        return [int(i) for i in ints if i is not None], True
    return list(range(1, len(records) + 1)), False


def write_coco(records: list[CaptionRecord], path: PathLike, image_root: PathLike | None = None) -> None:
    """Write a COCO captions file. `file_name` is relative to `image_root` (default: the output file's folder)
    when the image lies under it, else absolute. Ids are the records' when all are distinct integers; otherwise
    1..N with the original id kept as `images[].original_id`. `split` is kept as `images[].split`."""
    root = Path(image_root) if image_root is not None else Path(path).parent
    ids, own = _ids(records)
    images, annotations = [], []
    for record, image_id in zip(records, ids):
        entry: dict[str, Any] = {"id": image_id, "file_name": _relative(record.image, root)}
        if not own:
            entry["original_id"] = record.image_id
        if record.split is not None:
            entry["split"] = record.split
        images.append(entry)
        for caption in record.captions:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "caption": caption})
    data = {"info": {"description": "written by toolkit.data.captions"}, "licenses": [], "type": "captions",
            "images": images, "annotations": annotations}
    write_atomic(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def write_karpathy(records: list[CaptionRecord], path: PathLike, image_root: PathLike | None = None) -> None:
    """Write a Karpathy split file: `filepath`/`filename` relative to `image_root` (default: the output file's
    folder) when possible; `split` from the record (default "train"); `tokens` = `normalize_caption(raw).split()`;
    `cocoid` when all ids are distinct integers, and `id` = the original id always."""
    root = Path(image_root) if image_root is not None else Path(path).parent
    ids, own = _ids(records)
    images, sentid = [], 0
    for imgid, (record, int_id) in enumerate(zip(records, ids)):
        rel = _relative(record.image, root)
        folder, _, filename = rel.rpartition("/")
        folder = folder or ("/" if rel.startswith("/") else "")
        sentences = []
        for caption in record.captions:
            sentences.append({"raw": caption, "tokens": normalize_caption(caption).split(), "imgid": imgid,
                              "sentid": sentid})
            sentid += 1
        entry: dict[str, Any] = {"filepath": folder, "filename": filename, "imgid": imgid, "id": record.image_id,
                                 "split": record.split or "train", "sentids": [s["sentid"] for s in sentences],
                                 "sentences": sentences}
        if own:
            entry["cocoid"] = int_id
        images.append(entry)
    write_atomic(path, json.dumps({"images": images, "dataset": "toolkit"}, ensure_ascii=False) + "\n")


def write_jsonl(records: list[CaptionRecord], path: PathLike) -> None:
    """Write a JSONL manifest, one record per line; image paths relative to the manifest's folder when under it."""
    root = Path(path).parent
    lines = []
    for r in records:
        obj: dict[str, Any] = {"image": _relative(r.image, root), "captions": list(r.captions), "id": r.image_id}
        if r.split is not None:
            obj["split"] = r.split
        lines.append(json.dumps(obj, ensure_ascii=False))
    write_atomic(path, "".join(line + "\n" for line in lines))


_WRITERS: dict[str, Callable[[list[CaptionRecord], PathLike], None]] = {
    "coco": write_coco,
    "karpathy": write_karpathy,
    "jsonl": write_jsonl,
}


def convert_captions(
    src: PathLike,
    dst: PathLike,
    to: Literal["coco", "karpathy", "jsonl"],
    image_root: PathLike | None = None,
    splits: Iterable[str] | None = None,
) -> int:
    """Read `src` (any format, `image_root` / `splits` as in `read_captions`), write `dst` in format `to`, with image
    paths relative to `dst`'s folder where possible. Returns the number of images written."""
    if to not in _WRITERS:
        raise ToolkitError(f"caption format {to!r} is unknown (known: {', '.join(_WRITERS)})")
    records = read_captions(src, image_root, splits)
    _WRITERS[to](records, dst)
    return len(records)
