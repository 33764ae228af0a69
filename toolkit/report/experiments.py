"""The report of a run, collected from standard experiment folders (what `toolkit report` writes).

    build_report("exp/quickstart/report.html", caption_exp="exp/caption", speech_exp="exp/speech",
                 subtitles="exp/subtitles", title="Quickstart")

What is read; every part that is absent is left out, but a folder given with none of its parts is an error:
  caption experiment  eval/*.json, each what `toolkit evaluate --out` writes for a captioner ({"scores",
                      "predictions"}), named <split>_beam<N>.json as the recipes name them: one metrics row each;
                      train_log.csv: a training summary; loss_curve.png; gallery.json: caption cards with attention
                      heatmaps (format: `toolkit.report.gallery.read_gallery_json`; `write_gallery_json` makes it)
  speech experiment   eval/<split>.json, what `toolkit evaluate --out` writes for a speech model ({"report",
                      "utterances"}): WER / CER / S / D / I per split, the per-voice breakdown, the worst
                      utterances with their alignments; train_log.csv; loss_curve.png
  subtitles folder    <name>.webm or <name>.mp4 with <name>.vtt: the video playing with its subtitle track, and a
                      table of the cues; <name>.timing.json (optional): its numbers as a table; a .vtt without a
                      video: the cue table alone
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.report.gallery import read_gallery_json
from toolkit.report.page import ReportPage, read_vtt_cues

CAPTION_METRICS = {"BLEU-4": ".4f", "CIDEr-D": ".3f", "METEOR": ".4f", "ROUGE-L": ".4f", "exact match": ".1%"}
SPEECH_FORMATS = {"WER": ".2%", "CER": ".2%"}
VIDEO_SUFFIXES = (".webm", ".mp4")
WORST_SHOWN = 5  # worst utterances shown per split
EVAL_NAME = re.compile(r"(?P<split>.+?)(?:_beam(?P<beam>\d+))?")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ToolkitError(" ".join(f"{path}: cannot be read as JSON ({e})".split())) from None


def _evaluations(exp: Path, key: str, what: str) -> list[tuple[Path, dict]]:
    """The eval/*.json files of `exp` (sorted by name), each required to hold `key`."""
    files = []
    for path in sorted((exp / "eval").glob("*.json")):
        data = _read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise ToolkitError(f"{path}: not a {what} evaluation (no {key!r} object, as `toolkit evaluate --out` "
                               "writes it)")
        files.append((path, data))
    return files


def _training_summary(log: Path) -> dict[str, Any] | None:
    """The last update, epoch, minutes, training loss, items/s and validation values of a train_log.csv."""
    try:
        with open(log, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ToolkitError(" ".join(f"{log}: cannot be read ({e})".split())) from None
    if not rows:
        return None

    def last(column: str) -> float | None:
        value = next((r[column] for r in reversed(rows) if r.get(column) not in (None, "")), None)
        try:
            return None if value is None else float(value)
        except ValueError:
            raise ToolkitError(f"{log}: column {column}: {value!r} is not a number") from None

    step, elapsed = last("step"), last("elapsed_s")
    summary: dict[str, Any] = {"updates": None if step is None else int(step), "epochs": last("epoch"),
                               "minutes": None if elapsed is None else elapsed / 60, "training loss": last("loss"),
                               "items/s": last("items_per_s")}
    for column in rows[-1]:
        if column.startswith("valid_"):
            summary[f"last valid {column[6:]}"] = last(column)
    return summary


def _training(page: ReportPage, exp: Path) -> bool:
    """The training summary table and the loss curve of `exp`, where present; whether there was any."""
    found = False
    if (exp / "train_log.csv").is_file() and (summary := _training_summary(exp / "train_log.csv")):
        page.table([summary], caption="Training (train_log.csv)",
                   formats={"epochs": ".2f", "minutes": ".1f", "items/s": ".1f"})
        found = True
    if (exp / "loss_curve.png").is_file():
        page.figure(exp / "loss_curve.png", f"{exp.name}: training loss and validation metric")
        found = True
    return found


def _existing(folder: str | Path, what: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise ToolkitError(f"{folder}: no such {what} folder")
    return folder


def add_caption_experiment(page: ReportPage, exp: str | Path) -> None:
    """The captioning part of the report (see the module docstring)."""
    exp = _existing(exp, "caption experiment")
    page.section(f"Image captioning: {exp}")
    evaluations = _evaluations(exp, "scores", "captioning")
    if evaluations:
        rows = []
        for path, data in evaluations:
            name = EVAL_NAME.fullmatch(path.stem)
            scores = {**data["scores"], "exact match": data["scores"].get("exact_match")}
            rows.append({"split": name["split"], "beam": int(name["beam"]) if name["beam"] else None,
                         "images": len(data.get("predictions") or []),
                         **{m: scores[m] for m in CAPTION_METRICS if scores.get(m) is not None}})
        page.table(rows, caption="Caption metrics (eval/*.json)", formats=CAPTION_METRICS)
    trained = _training(page, exp)
    if (exp / "gallery.json").is_file():
        items = read_gallery_json(exp / "gallery.json")
        page.section(f"Captions and attention ({len(items)} images)", "Each thumbnail shows where the decoder "
                     "looked while it generated the word under it.", level=3)
        page.caption_cards(items)
    elif not evaluations and not trained:
        raise ToolkitError(f"{exp}: holds none of eval/*.json, train_log.csv, loss_curve.png, gallery.json")


def _group_name(data: dict) -> str:
    """The manifest field the per-group breakdown is by (e.g. voice), from the utterance rows."""
    rows = data.get("utterances") or [{}]
    extra = [k for k in rows[0] if k not in ("id", "audio", "reference", "hypothesis")]
    return extra[0] if extra else "group"


def _wer_row(summary: dict) -> dict[str, Any]:
    return {"utterances": summary["utterances"], "words": summary["words"], "WER": summary["wer"],
            "CER": summary["cer"], "S": summary["substitutions"], "D": summary["deletions"],
            "I": summary["insertions"]}


def add_speech_experiment(page: ReportPage, exp: str | Path) -> None:
    """The speech recognition part of the report (see the module docstring)."""
    exp = _existing(exp, "speech experiment")
    page.section(f"Speech recognition: {exp}")
    evaluations = _evaluations(exp, "report", "speech recognition")
    try:
        if evaluations:
            page.table([{"split": path.stem, **_wer_row(data["report"])} for path, data in evaluations],
                       caption="Word and character error rates (eval/*.json)", formats=SPEECH_FORMATS)
            groups = [{"split": path.stem, _group_name(data): name, **_wer_row(g)}
                      for path, data in evaluations for name, g in (data["report"].get("groups") or {}).items()]
            if groups:
                page.table(groups, caption="Per-voice breakdown", formats=SPEECH_FORMATS, scroll=True)
    except KeyError as e:
        raise ToolkitError(f"{exp}/eval: a speech evaluation lacks the field {e}") from None
    trained = _training(page, exp)
    for path, data in evaluations:
        worst = data["report"].get("worst") or []
        if worst:
            page.section(f"Worst utterances: {path.stem}", level=3)
            page.preformatted("\n\n".join(
                f"[{u.get('id')}] {u.get('group', '')}: {u.get('errors')} errors / {u.get('words')} words\n"
                f"{u.get('alignment', '')}" for u in worst[:WORST_SHOWN]))
    if not evaluations and not trained:
        raise ToolkitError(f"{exp}: holds none of eval/*.json, train_log.csv, loss_curve.png")


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """The scalar leaves of nested objects as (dotted key, value); lists are left out."""
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        elif value is None or isinstance(value, (str, int, float, bool)):
            out.append((f"{prefix}{key}", value))
    return out


def add_subtitles(page: ReportPage, folder: str | Path) -> None:
    """The subtitled videos of `folder` (see the module docstring)."""
    folder = _existing(folder, "subtitles")
    videos = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()}
    tracks = {p.stem: p for p in sorted(folder.glob("*.vtt")) if p.is_file()}
    names = sorted(videos.keys() | tracks.keys())
    if not names:
        raise ToolkitError(f"{folder}: holds no .webm / .mp4 video and no .vtt subtitles")
    page.section(f"Subtitles: {folder}")
    for name in names:
        page.section(name, level=3)
        if name in videos:
            page.video(videos[name], tracks.get(name))
        else:
            cues = read_vtt_cues(tracks[name])
            page.cue_table(cues, f"{tracks[name].name}: {len(cues)} cues (no video)")
        timing = folder / f"{name}.timing.json"
        if timing.is_file():
            data = _read_json(timing)
            if not isinstance(data, dict):
                raise ToolkitError(f"{timing}: must be a JSON object")
            page.table(_flatten(data), ["measure", "value"], caption=timing.name)


def build_report(
    out: str | Path,
    caption_exp: str | Path | None = None,
    speech_exp: str | Path | None = None,
    subtitles: str | Path | None = None,
    title: str = "toolkit report",
) -> Path:
    """Write the report page `out` (and its assets/) from the parts given; returns `out`."""
    if caption_exp is None and speech_exp is None and subtitles is None:
        raise ToolkitError("nothing to report: give a caption experiment, a speech experiment and/or a subtitles "
                           "folder")
    page = ReportPage(title)
    if caption_exp is not None:
        add_caption_experiment(page, caption_exp)
    if speech_exp is not None:
        add_speech_experiment(page, speech_exp)
    if subtitles is not None:
        add_subtitles(page, subtitles)
    return page.write(out)
