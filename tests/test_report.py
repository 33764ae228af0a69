"""`toolkit report`: the page built from experiment folders, and what headless Chromium actually loads from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image, ImageDraw

from toolkit.cli import main
from toolkit.synth.longform import make_demo_video
from toolkit.errors import ToolkitError
from toolkit.metrics import caption_scores
from toolkit.metrics.asr import wer_report
from toolkit.report import GalleryItem, read_gallery_json, write_gallery_json
from toolkit.report.browser import find_chromium, load_in_browser, take_screenshot
from toolkit.report.page import read_vtt_cues
from toolkit.subtitles import Cue, get_writer
from toolkit.train.log import CSVLog, plot_curves

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="no Chromium (Debian: apt-get install chromium)")
VIDEO_SECONDS = 3.0


def shape_image(colour: str) -> Image.Image:
    img = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(img).ellipse((12, 12, 52, 52), fill=colour)
    return img


def write_training(exp: Path, metric: str) -> None:
    """train_log.csv and loss_curve.png, as the trainer writes them."""
    log = CSVLog(exp / "train_log.csv")
    for step in range(1, 7):
        log.write({"step": step, "epoch": step / 3, "loss": 3.0 / step, "items_per_s": 120.0, "elapsed_s": 6.0 * step})
    log.write({"step": 6, "epoch": 2.0, f"valid_{metric}": 0.5})
    plot_curves(log, exp / "loss_curve.png", metric)


def write_caption_exp(exp: Path) -> None:
    """eval/<split>_beam<N>.json in the format of `toolkit evaluate --out` (tasks.caption.evaluate_captioner),
    the training log and curve, and a gallery.json of two images (the second with an EOS attention row)."""
    references = {"0": ["a red circle", "there is a red circle"], "1": ["a blue circle"], "2": ["a green circle"]}
    for name, predictions in (("test_iid_beam1", {"0": "a red circle", "1": "a blue circle", "2": "a circle"}),
                              ("test_heldout_beam4", {"0": "a red circle", "1": "a red circle", "2": "a green"})):
        scores = caption_scores(predictions, references, meteor=False)
        rows = [{"image_id": k, "image": f"images/{k}.png", "prediction": p, "references": references[k],
                 "exact": p in references[k]} for k, p in predictions.items()]
        (exp / "eval").mkdir(parents=True, exist_ok=True)
        (exp / "eval" / f"{name}.json").write_text(json.dumps({"scores": scores, "predictions": rows}, indent=1))
    write_training(exp, "BLEU-4")
    rng = np.random.default_rng(0)
    write_gallery_json(exp / "gallery.json", [
        GalleryItem(shape_image("red"), "a red circle", ["a red circle"], ["a", "red", "circle"],
                    rng.random((3, 4, 4))),
        GalleryItem(shape_image("blue"), "a blue <b>circle</b>", ["a blue circle"], ["a", "blue"],
                    rng.random((3, 4, 4))),
    ])


def write_speech_exp(exp: Path) -> None:
    """eval/<split>.json in the format of `toolkit evaluate --out` (tasks.asr.evaluate_asr), two voices each."""
    refs = {"u1": "the cat sat on the mat", "u2": "hello world", "u3": "good morning to you"}
    voices = {"u1": "en-us", "u2": "en-gb", "u3": "en-gb"}
    for split, hyps in (("test_seen", {"u1": "the cat sat on a mat", "u2": "hello world", "u3": "good morning"}),
                        ("test_heldout", {"u1": "a cat sat", "u2": "hello word", "u3": "good morning to you"})):
        report = wer_report(refs, hyps, groups=voices)
        rows = [{"id": k, "audio": f"{k}.wav", "reference": refs[k], "hypothesis": hyps[k], "voice": voices[k]}
                for k in refs]
        (exp / "eval").mkdir(parents=True, exist_ok=True)
        (exp / "eval" / f"{split}.json").write_text(json.dumps({"report": report, "utterances": rows}, indent=1))
    write_training(exp, "wer")


def write_subtitles(folder: Path) -> None:
    """A 3-second demo video (make_demo_video) with a 2-cue WebVTT track and a timing file."""
    folder.mkdir(parents=True)
    t = np.arange(int(VIDEO_SECONDS * 16000)) / 16000
    sf.write(folder / "tone.wav", (0.2 * np.sin(2 * np.pi * 440 * t) * (t % 1 < 0.5)).astype(np.float32), 16000)
    make_demo_video(folder / "tone.wav", folder / "demo.mp4", size=(160, 120), fps=10)
    (folder / "tone.wav").unlink()
    get_writer("vtt").write_file([Cue(0.2, 1.4, ["hello there"]), Cue(1.6, 2.8, ["it's <all> fine", "& done"])],
                                 folder / "demo.vtt")
    (folder / "demo.timing.json").write_text(json.dumps({"real_time_factor": 0.012, "cues": 2,
                                                         "start_error_ms": {"mean": 41.5, "max": 120}}))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("run")
    paths = {"caption": root / "caption", "speech": root / "speech", "subtitles": root / "subtitles"}
    write_caption_exp(paths["caption"])
    write_speech_exp(paths["speech"])
    write_subtitles(paths["subtitles"])
    out = root / "quickstart" / "report.html"
    assert main(["report", "-o", str(out), "--caption-exp", str(paths["caption"]), "--speech-exp",
                 str(paths["speech"]), "--subtitles", str(paths["subtitles"]), "--title", "Quick <run>"]) == 0
    return {**paths, "report": out}


# Blocks of the full report: caption metrics + caption training, speech WER + per-voice + speech training,
# the cue table and the timing table; images: 2 loss curves, 2 gallery cards, 3 + 3 attention thumbnails.
TABLES, IMAGES = 7, 10


def test_report_page(run):
    out = run["report"]
    page = out.read_text(encoding="utf-8")
    assert sorted(p.name for p in out.parent.iterdir()) == ["assets", "report.html"]  # no temporary file left
    assert sorted(p.name for p in (out.parent / "assets").iterdir()) == ["demo.mp4", "demo.vtt"]
    assert (out.parent / "assets" / "demo.mp4").read_bytes() == (run["subtitles"] / "demo.mp4").read_bytes()
    assert "http://" not in page and "https://" not in page and "<title>Quick &lt;run&gt;</title>" in page
    assert page.count("<table") == TABLES and len(re.findall(r'<img src="data:image/', page)) == IMAGES
    # caption metrics: one row per eval file, numbers as `toolkit evaluate` computed them
    scores = json.loads((run["caption"] / "eval" / "test_iid_beam1.json").read_text())["scores"]
    assert f'<td>test_iid</td><td class="num">1</td><td class="num">3</td><td class="num">{scores["BLEU-4"]:.4f}' \
           f'</td><td class="num">{scores["CIDEr-D"]:.3f}</td>' in page
    assert '<td class="num">66.7%</td>' in page  # exact match of test_iid: 2 of 3
    assert "a blue &lt;b&gt;circle&lt;/b&gt;" in page and page.count('<div class="card"') == 2
    # speech: per split and per voice, with the worst alignments
    seen = json.loads((run["speech"] / "eval" / "test_seen.json").read_text())["report"]
    assert f'<td>test_seen</td><td class="num">3</td><td class="num">{seen["words"]}</td>' \
           f'<td class="num">{100 * seen["wer"]:.2f}%</td>' in page
    assert "<th>voice</th>" in page and page.count("<td>en-gb</td>") == 2
    assert "REF: the cat sat on the mat" in page
    # the video and its subtitle track (embedded: a file:// page may not load a track from its folder)
    assert '<video controls preload="metadata">\n<source src="assets/demo.mp4" type="video/mp4">' in page
    track = re.search(r'<track kind="subtitles" srclang="en" label="English" src="data:text/vtt;base64,[^"]+" '
                      r'default>', page)
    assert track and '<a href="assets/demo.vtt">demo.vtt</a>' in page
    assert "<td>it&#x27;s &lt;all&gt; fine / &amp; done</td>" in page and "<td>0:00:01.600</td>" in page
    assert "<td>start_error_ms.mean</td>" in page


@needs_chromium
def test_report_in_chromium(run, tmp_path):
    view = load_in_browser(run["report"], user_data_dir=tmp_path / "profile")
    assert (view.tables, view.images, view.images_loaded) == (TABLES, IMAGES, IMAGES)
    assert len(view.videos) == 1
    video = view.videos[0]
    assert int(video["ready-state"]) >= 1 and video["error"] == ""
    assert float(video["duration"]) == pytest.approx(VIDEO_SECONDS, abs=0.15)
    # the stream's size is known (its header decoded); whether a frame is already presented within the virtual
    # time budget depends on the machine's load, so it is not asserted
    assert int(video["video-width"]) == 160
    assert (int(video["text-tracks"]), int(video["cues"])) == (1, 2)
    assert view.height > 1500


@needs_chromium
def test_screenshot(run, tmp_path):
    png = tmp_path / "shots" / "report.png"
    assert main(["report", "-o", str(tmp_path / "r.html"), "--subtitles", str(run["subtitles"]),
                 "--screenshot", str(png)]) == 0
    assert [p.name for p in png.parent.iterdir()] == ["report.png"]
    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape[1] == 1280 and pixels.shape[0] >= 200
    assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # text and a video, not blank
    full = take_screenshot(run["report"], tmp_path / "full.png", width=1000, user_data_dir=tmp_path / "profile")
    assert Image.open(full).size[0] == 1000 and Image.open(full).size[1] > 1500  # the whole page


def test_gallery_json_round_trip(tmp_path):
    attention = np.random.default_rng(1).random((3, 2, 2)).astype(np.float32)
    path = write_gallery_json(tmp_path / "exp" / "gallery.json",
                              [GalleryItem(shape_image("red"), "a red", ["a red circle"], ["a", "red"], attention),
                               GalleryItem(shape_image("blue"), "a blue circle")])
    records = json.loads(path.read_text())
    assert records[0]["image"] == "gallery/000-image.png" and records[1]["attention"] is None
    items = read_gallery_json(path)
    assert [i.caption for i in items] == ["a red", "a blue circle"] and items[0].tokens == ["a", "red"]
    np.testing.assert_array_equal(items[0].attention, attention)
    assert Image.open(items[1].image).size == (64, 64)
    for broken, message in (
        ({"caption": "x"}, r"\[0\]: must be an object with string fields image and caption"),
        ({**records[0], "tokens": "a red"}, r"\[0\]\.tokens: must be a list of strings"),
        ({**records[0], "image": "gallery/none.png"}, r"\[0\]\.image: .*none\.png not found"),
        ({**records[0], "tokens": ["a"]}, r"\[0\]\.attention: expected float \(U, H', W'\) with U = 1 tokens"),
        ({**records[0], "attention": "gallery/000-image.png"}, r"\[0\]\.attention: .* is not a \.npy array"),
    ):
        path.write_text(json.dumps([broken]))
        with pytest.raises(ToolkitError, match=message) as e:
            read_gallery_json(path)
        assert "\n" not in str(e.value)
    path.write_text('{"image": "x"}')
    with pytest.raises(ToolkitError, match="must be a JSON list"):
        read_gallery_json(path)


def test_read_vtt_cues(tmp_path):
    vtt = tmp_path / "a.vtt"
    vtt.write_text("WEBVTT\n\nNOTE made by hand\n\n1\n01:02.500 --> 1:01:03.250 align:start\n<i>one</i> &amp; two\n"
                   "three\n\n00:00:05.000 --> 00:00:06.000\nfour\n")
    assert read_vtt_cues(vtt) == [(62.5, 3663.25, "one & two / three"), (5.0, 6.0, "four")]
    vtt.write_text("1\n00:00:01,000 --> 00:00:02,000\nan SRT file\n")
    with pytest.raises(ToolkitError, match="not a WebVTT file"):
        read_vtt_cues(vtt)
    vtt.write_text("WEBVTT\n\n00:xx --> 00:01.000\nbad\n")
    with pytest.raises(ToolkitError, match="bad cue timing line"):
        read_vtt_cues(vtt)


def test_parts_and_errors(run, tmp_path, capsys):
    # a subtitles folder alone, with a track that has no video: the cue table, nothing else
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "talk.vtt").write_bytes((run["subtitles"] / "demo.vtt").read_bytes())
    assert main(["report", "-o", str(tmp_path / "a.html"), "--subtitles", str(alone)]) == 0
    page = (tmp_path / "a.html").read_text()
    assert page.count("<table") == 1 and "<video" not in page and "talk.vtt: 2 cues (no video)" in page
    assert not (tmp_path / "assets").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    wrong = tmp_path / "wrong"
    (wrong / "eval").mkdir(parents=True)
    (wrong / "eval" / "test.json").write_text((run["speech"] / "eval" / "test_seen.json").read_text())
    broken_log = tmp_path / "broken_log"
    broken_log.mkdir()
    (broken_log / "train_log.csv").write_text("step,loss\n1,2.5\n2,nan?\n")
    out = str(tmp_path / "r.html")
    for argv, message in (
        ([], "nothing to report"),
        (["--caption-exp", str(tmp_path / "missing")], "missing: no such caption experiment folder"),
        (["--speech-exp", str(empty)], r"empty: holds none of eval/\*\.json"),
        (["--subtitles", str(empty)], "empty: holds no .webm / .mp4 video and no .vtt"),
        (["--caption-exp", str(wrong)], r"test.json: not a captioning evaluation \(no 'scores' object"),
        (["--speech-exp", str(broken_log)], r"train_log.csv: column loss: 'nan\?' is not a number"),
    ):
        capsys.readouterr()
        assert main(["report", "-o", out, *argv]) == 2
        err = capsys.readouterr().err
        assert re.search(message, err) and err.startswith("toolkit report: error:") and err.count("\n") == 1
    assert not Path(out).exists()
