"""The `toolkit` command line. Each subcommand is a small function; user errors print one line and exit 2."""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import math
import os
import sys
from pathlib import Path

from toolkit import __version__
from toolkit.errors import ToolkitError


def cmd_encoders(args: argparse.Namespace) -> None:
    from toolkit.model import list_encoders

    if args.backbones is None:
        for name in list_encoders():
            print(name)
        return
    import timm
    import torchvision

    print("timm:", " ".join(timm.list_models(args.backbones)) or "(none)")
    names = torchvision.models.list_models(module=torchvision.models)
    print("torchvision:", " ".join(fnmatch.filter(names, args.backbones)) or "(none)")


def cmd_info(args: argparse.Namespace) -> None:
    from toolkit.bundle import load_model, read_bundle_config

    if read_bundle_config(args.model)["info"].get("task") == "lm":
        from toolkit.config import to_dict
        from toolkit.lm import load_lm

        lm = load_lm(args.model)
        summary = {"language_model": to_dict(lm.model.config),
                   "tokenizer": f"{lm.tokenizer.kind} ({lm.tokenizer.vocab_size} tokens)",
                   "parameters": sum(p.numel() for p in lm.model.parameters()), "info": lm.info}
        print(json.dumps(summary, indent=2))
        return
    bundle = load_model(args.model)
    cfg = bundle.model.config
    params = sum(p.numel() for p in bundle.model.parameters())
    summary = {
        "encoder": cfg.encoder,
        "d_model": cfg.d_model,
        "decoder_layers": cfg.decoder.num_layers if cfg.decoder else None,
        "ctc": cfg.ctc,
        "tokenizer": f"{bundle.tokenizer.kind} ({bundle.tokenizer.vocab_size} tokens)",
        "runtime": read_bundle_config(args.model).get("runtime", "torch"),
        "parameters": params,
        "info": bundle.info,
    }
    print(json.dumps(summary, indent=2))


def cmd_smoke(args: argparse.Namespace) -> None:
    from toolkit.smoke import run_smoke

    r = run_smoke(Path(args.out), steps=args.steps, seed=args.seed)
    print(f"{'search':<8} {'exact match':>12}")
    print(f"{'greedy':<8} {r.exact_greedy:>12.3f}")
    print(f"{'beam 4':<8} {r.exact_beam:>12.3f}")
    print(f"model bundle: {r.bundle}")
    print(f"exact_greedy={r.exact_greedy:.3f} exact_beam={r.exact_beam:.3f} "
          f"final_loss={r.final_loss:.4f} seconds={r.seconds:.1f}")


def cmd_train(args: argparse.Namespace) -> None:
    from toolkit.config import apply_overrides, from_dict, read_yaml

    data = apply_overrides(read_yaml(args.config), args.overrides)
    task = data.get("task", "caption")
    if task == "caption":
        from toolkit.tasks.caption import CaptionExperiment as Experiment, train_captioner as train
    elif task == "asr":
        from toolkit.tasks.asr import AsrExperiment as Experiment, train_asr as train
    elif task == "lm":
        from toolkit.tasks.lm import LmExperiment as Experiment, train_lm as train
    else:
        raise ToolkitError(f"{args.config}: task {task!r} is not known (known: caption, asr, lm)")
    exp = from_dict(Experiment, data, str(args.config))
    r = train(exp, Path(args.out), resume=args.resume)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 alone reports
        return
    print(f"trained {r.steps} steps ({r.epochs} epochs) in {r.seconds / 60:.1f} min, {r.items_per_second:.1f} items/s")
    if r.best_path:
        print(f"best ({exp.train.metric} {r.best_metric:.4f} at step {r.best_step}): {r.best_path}")
    print(f"final: {r.final_path}")
    print(" ".join(f"{k}={v:.4f}" for k, v in r.final_metrics.items()))


def cmd_evaluate_asr(args: argparse.Namespace) -> None:
    from toolkit.metrics.asr import format_wer_table
    from toolkit.tasks.asr import evaluate_asr

    report, _ = evaluate_asr(args.model, args.data, args.splits, args.max_images, args.out, lm=args.lm,
                             device=args.device, beam_size=args.beam, ctc_weight=args.ctc_weight,
                             lm_weight=args.lm_weight, length_bonus=args.length_bonus, oov_penalty=args.oov_penalty)
    print(format_wer_table(report))
    print(f"wer={report['wer']:.4f} cer={report['cer']:.4f}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from toolkit.bundle import read_bundle_config
    from toolkit.decode import DecodingOptions

    if read_bundle_config(args.model).get("info", {}).get("task") == "asr":
        return cmd_evaluate_asr(args)
    if any(v is not None for v in (args.lm, args.lm_weight, args.length_bonus, args.oov_penalty)):
        raise ToolkitError(f"{args.model}: --lm, --lm-weight, --length-bonus and --oov-penalty are for speech "
                           "recognition models")
    args.beam = args.beam or 1
    from toolkit.metrics import format_table
    from toolkit.tasks.caption import evaluate_captioner

    options = DecodingOptions(beam_size=args.beam, max_length=args.max_length, length_penalty=args.length_penalty)
    scores, rows = evaluate_captioner(
        args.model, args.data, args.image_root, args.splits, options, args.batch_size, args.max_images,
        args.out, meteor=False if args.no_meteor else None, device=args.device,
    )
    print(format_table(scores))
    if args.report or args.gallery_json:
        from toolkit.pipelines import Captioner
        from toolkit.report import GalleryItem, write_caption_gallery, write_gallery_json

        shown = rows[: args.report_images]
        results = Captioner.from_pretrained(args.model, device=args.device).caption(
            [r["image"] for r in shown], beam_size=args.beam, max_length=args.max_length,
            length_penalty=args.length_penalty, attention=True,
        )
        items = [GalleryItem(r["image"], res.caption, r["references"], res.tokens, res.attention)
                 for r, res in zip(shown, results)]
        if args.report:
            print(f"report: {write_caption_gallery(args.report, items, title=f'{args.data}', metrics=scores)}")
        if args.gallery_json:
            print(f"gallery: {write_gallery_json(args.gallery_json, items)}")
    print(" ".join(f"{k.lower().replace('-', '')}={v:.4f}" for k, v in scores.items()))


def cmd_caption(args: argparse.Namespace) -> None:
    from toolkit.pipelines import Captioner, expand_image_args

    paths = expand_image_args(args.images)
    captioner = Captioner.from_pretrained(args.model, device=args.device)
    results = captioner.caption(paths, beam_size=args.beam, batch_size=args.batch_size,
                                max_length=args.max_length, attention=bool(args.report))
    if args.json:
        print(json.dumps([{"image": str(p), "caption": r.caption, "score": round(r.score, 4)}
                          for p, r in zip(paths, results)], indent=1))
    else:
        for p, r in zip(paths, results):
            print(f"{p}\t{r.caption}")
    if args.report:
        from toolkit.report import GalleryItem, write_caption_gallery

        items = [GalleryItem(p, r.caption, [], r.tokens, r.attention) for p, r in zip(paths, results)]
        print(f"report: {write_caption_gallery(args.report, items)}", file=sys.stderr)


def cmd_transcribe(args: argparse.Namespace) -> None:
    from toolkit.media import VadConfig
    from toolkit.pipelines import Transcriber

    transcriber = Transcriber.from_pretrained(args.model, device=args.device, lm=args.lm, lm_weight=args.lm_weight,
                                              length_bonus=args.length_bonus, oov_penalty=args.oov_penalty)
    vad = None if args.vad == "none" else VadConfig(backend=args.vad, threshold=args.vad_threshold)
    results = transcriber.transcribe(args.audio, beam_size=args.beam, batch_size=args.batch_size,
                                     ctc_weight=args.ctc_weight, ctc_only=args.ctc_only, vad=vad,
                                     max_chunk=args.max_chunk, word_times=args.word_times, progress=not args.quiet)
    if args.json:
        print(json.dumps([transcript_json(r) for r in results], indent=1))
    else:
        for r in results:
            print(f"{r.source}\t{r.text}")


def transcript_json(result) -> dict:
    """One `TranscriptResult` as JSON: the transcript, then its segments (seconds, rounded to ms), with words."""
    def segment(i, s):
        out = {"id": i, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text, "score": round(s.score, 4)}
        if s.words is not None:
            out["words"] = [{"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3)} for w in s.words]
        return out

    return {"audio": result.source, "text": result.text, "score": round(result.score, 4),
            "duration": round(result.duration, 3), "segments": [segment(i, s) for i, s in enumerate(result.segments)]}


def _given(args: argparse.Namespace, *names: str) -> dict:
    """The options among `names` given on the command line; the others keep their config's defaults."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _print_paths(paths: dict[str, Path]) -> None:
    for split, path in paths.items():
        print(f"{split}: {path}")


def cmd_synth_shapes(args: argparse.Namespace) -> None:
    from toolkit.synth.shapes import ShapesConfig, make_shapes_corpus

    sizes = _given(args, "train", "val", "test_iid", "test_heldout", "image_size", "max_objects")
    _print_paths(make_shapes_corpus(args.out, ShapesConfig(seed=args.seed, **sizes)))


def cmd_synth_speech(args: argparse.Namespace) -> None:
    from toolkit.synth.augment import AugmentConfig
    from toolkit.synth.speech import LM_TEXT, UNSEEN_VOICES, SpeechSynthConfig, make_speech_corpus

    options = _given(args, "train", "valid", "test_seen", "test_heldout", "test_unseen", "workers")
    probs = dict(args.augment or [])
    if args.voice_shift is not None:
        probs["voice"] = args.voice_shift
    if probs:
        options["augment"] = AugmentConfig(**{f"{kind}_prob": p for kind, p in probs.items()})
    if args.mbrola:  # only these MBROLA voices: the unseen ones among them stay unseen
        options["mbrola_voices"] = tuple(args.mbrola)
        options["unseen_voices"] = tuple(v for v in UNSEEN_VOICES if not v.startswith("mbrola:")
                                         or v.removeprefix("mbrola:") in args.mbrola)
    paths = make_speech_corpus(args.out, SpeechSynthConfig(seed=args.seed, **options))
    _print_paths({**paths, "lm_text": Path(args.out) / LM_TEXT})  # text for an external language model
    record = json.loads((Path(args.out) / "speech_corpus.json").read_text(encoding="utf-8"))
    print("utterances by engine: " + ", ".join(f"{e} {n}" for e, n in record.get("engines", {}).items()))


def cmd_synth_longform(args: argparse.Namespace) -> None:
    from toolkit.data.speech import read_speech
    from toolkit.synth.longform import LongformConfig, assemble_longform, make_demo_video

    wav = Path(args.out) / "longform.wav"
    segments = assemble_longform(read_speech(args.manifest), wav, LongformConfig(minutes=args.minutes, seed=args.seed))
    speech = sum(s.kind == "speech" for s in segments)
    print(f"audio: {wav} ({segments[-1].end:.1f} s, {speech} utterances)")
    print(f"timeline: {wav.with_suffix('.json')}")
    if args.video:
        print(f"video: {make_demo_video(wav, wav.with_suffix('.mp4'))}")


def cmd_augment(args: argparse.Namespace) -> None:
    from toolkit.augment import SpeechAugmentConfig
    from toolkit.augment.offline import augment_corpus
    from toolkit.config import load_config
    from toolkit.data.speech import read_speech

    config = load_config(SpeechAugmentConfig, args.config, args.overrides)
    records = read_speech(args.manifest)
    name = Path(args.manifest).stem if Path(args.manifest).suffix == ".jsonl" else "train"
    manifest = augment_corpus(records, args.out, config, seed=args.seed, copies=args.copies, name=name,
                              keep_clean=args.keep_clean, workers=args.workers or os.cpu_count() or 1)
    print(f"{name}: {manifest}")


def cmd_export(args: argparse.Namespace) -> None:
    from toolkit.export import export_onnx

    print(f"exporting {args.model} -> {args.out} ({args.format}{', ' + args.quantize if args.quantize else ''})")
    out = export_onnx(args.model, args.out, quantize=args.quantize, progress=True)
    size = sum(p.stat().st_size for p in out.glob("*.onnx"))
    print(f"wrote {out} ({size / 1e6:.1f} MB of graphs); it loads like a bundle: toolkit transcribe --model {out}")


def cmd_convert(args: argparse.Namespace) -> None:
    from toolkit.data import convert_captions

    n = convert_captions(args.src, args.dst, args.to, args.image_root, args.splits)
    print(f"wrote {n} images to {args.dst} ({args.to})")


def cmd_subtitle(args: argparse.Namespace) -> None:
    from toolkit.media import VadConfig
    from toolkit.pipelines.subtitler import SubtitleOptions, Subtitler
    from toolkit.subtitles import CueRules, get_writer
    from toolkit.subtitles.mux import find_ffmpeg, mux_subtitles

    source = Path(args.input)
    fmt = args.format or (Path(args.out).suffix.lstrip(".").lower() if args.out else "srt")
    writer = get_writer(fmt)
    out = Path(args.out) if args.out else source.with_suffix(f".{writer.extension.lstrip('.')}")
    if args.mux:
        find_ffmpeg()  # say so before an hour of decoding, not after
    rules = CueRules(max_line_chars=args.max_line_chars, max_lines=args.max_lines, max_cps=args.max_cps,
                     min_duration=args.min_duration, max_duration=args.max_duration, min_gap=args.min_gap)
    options = SubtitleOptions(vad=VadConfig(backend=args.vad, threshold=args.vad_threshold), rules=rules,
                              max_chunk=args.max_chunk, beam_size=args.beam, batch_size=args.batch_size,
                              ctc_weight=args.ctc_weight, lm_weight=args.lm_weight,
                              length_bonus=args.length_bonus, oov_penalty=args.oov_penalty)
    subtitler = Subtitler.from_pretrained(args.model, options, lm=args.lm, device=args.device)
    result = subtitler.subtitle(source, progress=not args.quiet)
    writer.write_file(result.cues, out)
    print(f"{out}: {len(result.cues)} cues, {len(result.words)} words, {result.duration / 60:.1f} min of audio")
    if args.timeline:
        from toolkit.synth.longform import read_timeline
        from toolkit.subtitles.scoring import timing_report

        report = timing_report(result.cues, read_timeline(args.timeline), rules)
        scored = out.with_suffix(".timing.json")
        scored.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(f"{scored}: cue start error median {report['start_error_median']:.3f} s, "
              f"p95 {report['start_error_p95']:.3f} s; {report['cues_in_nonspeech']} cues over non-speech, "
              f"{report['rule_violations']} rule violations")
    if args.mux:
        track = out
        if fmt == "json":  # a video takes SRT, not our JSON
            track = out.with_suffix(".srt")
            get_writer("srt").write_file(result.cues, track)
        print(f"{mux_subtitles(source, track, args.mux)}: the video with a soft subtitle track")


def cmd_report(args: argparse.Namespace) -> None:
    from toolkit.report import build_report

    out = build_report(args.out, args.caption_exp, args.speech_exp, args.subtitles, args.title)
    print(f"report: {out}")
    if args.screenshot:
        from toolkit.report.browser import take_screenshot

        print(f"screenshot: {take_screenshot(out, args.screenshot)}")


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a beam of 0 is refused by argparse, not deep in the decoder)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


AUGMENT_KINDS = ("noise", "reverb", "speed", "telephone")  # AugmentConfig's <kind>_prob fields (voice: --voice-shift)


def _augment_prob(text: str) -> tuple[str, float]:
    """argparse type: KIND=P, an augmentation of `AUGMENT_KINDS` and the share of utterances it applies to."""
    kind, sep, value = text.partition("=")
    if not sep or kind not in AUGMENT_KINDS:
        raise argparse.ArgumentTypeError(f"expected KIND=P with KIND among {', '.join(AUGMENT_KINDS)}, got {text!r}")
    try:
        return kind, _weight(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{kind}: expected a share in [0, 1], got {value!r}") from None


def _weight(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _number(text: str) -> float:
    """argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    return value


def _nonnegative(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_number(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _add_lm_options(p: argparse.ArgumentParser, prefix: str) -> None:
    """--lm, --lm-weight, --length-bonus, --oov-penalty: shallow fusion with an external language model
    (toolkit.lm)."""
    p.add_argument("--lm", metavar="DIR", help=f"{prefix}language model bundle to fuse into the search (trained with "
                                               "`toolkit train` task lm and this model's tokenizer)")
    p.add_argument("--lm-weight", type=_nonnegative, help="weight of the LM's log-probabilities (default: the "
                                                          "model's saved decoding.lm_weight)")
    p.add_argument("--length-bonus", type=_number, help="score added per output token, to offset the LM's "
                                                        "preference for short outputs (default: the model's, or 0)")
    p.add_argument("--oov-penalty", type=_nonnegative, help="score taken off each word the LM's lexicon does not list "
                                                           "(default: the model's, or 0)")


def _add_device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="where the model runs: auto (the first GPU when CUDA is available, "
                                                    "else the CPU), cpu, cuda or cuda:N (default: auto)")


def _add_synth_parsers(kinds: argparse._SubParsersAction) -> None:
    """`toolkit synth shapes|speech|longform`, each with its own options."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, help="folder to write the corpus to")
    common.add_argument("--seed", type=int, default=0, help="everything random is drawn from it (default: 0)")

    p = kinds.add_parser("shapes", parents=[common], help="images of coloured shapes and their captions (COCO JSON)")
    p.add_argument("--train", type=int, help="training images (6000)")
    p.add_argument("--val", type=int, help="validation images (300)")
    p.add_argument("--test-iid", type=int, help="i.i.d. test images (500)")
    p.add_argument("--test-heldout", type=int, help="test images of colour-shape pairs training never shows (500)")
    p.add_argument("--image-size", type=int, help="image side in pixels (128)")
    p.add_argument("--max-objects", type=int, choices=[1, 2, 3], help="objects per image, at most (3)")
    p.set_defaults(func=cmd_synth_shapes)

    p = kinds.add_parser("speech", parents=[common], help="English sentences spoken by synthetic voices (JSONL "
                                                          "manifests, WAV files, lm_text.txt)")
    p.add_argument("--train", type=int, help="training utterances (9000)")
    p.add_argument("--valid", type=int, help="validation utterances (200)")
    p.add_argument("--test-seen", type=int, help="test utterances by training voices (300)")
    p.add_argument("--test-heldout", type=int, help="test utterances by held-out accents and variants: voices "
                                                     "training never hears (300)")
    p.add_argument("--test-unseen", type=int, help="test utterances by whole voices of other engines training never "
                                                    "hears: Pico en-GB, MBROLA us3, Festival's HTS voice (300)")
    p.add_argument("--workers", type=int, help="synthesis processes (default: CPU count)")
    p.add_argument("--voice-shift", type=_weight, metavar="P",
                   help="share of training utterances whose pitch and formants are shifted together "
                        "(x 0.85-1.15: the voice of a larger or smaller speaker; default 0)")
    p.add_argument("--augment", nargs="+", type=_augment_prob, metavar="KIND=P",
                   help="the share of training utterances each augmentation applies to, for KIND among "
                        f"{', '.join(AUGMENT_KINDS)} (defaults: noise=0.3 reverb=0.2 speed=0.3 telephone=0.1); "
                        "e.g. --augment noise=0 reverb=0 telephone=0 leaves only speed perturbation")
    p.add_argument("--mbrola", nargs="+", metavar="NAME",
                   help="only these MBROLA voices (default: us1 us2 us3 en1, us3 unseen; Debian contrib / non-free: "
                        "apt-get install mbrola mbrola-NAME)")
    p.set_defaults(func=cmd_synth_speech)

    p = kinds.add_parser("longform", parents=[common], help="one long recording with a known timeline "
                                                            "(longform.wav + longform.json), from a speech manifest")
    p.add_argument("--manifest", required=True, help="the utterances (JSONL manifest, Kaldi dir or LibriSpeech "
                                                     "folder)")
    p.add_argument("--minutes", type=float, help="cycle the utterances until this long (default: each once)")
    p.add_argument("--video", action="store_true", help="also write a test-pattern video (longform.mp4)")
    p.set_defaults(func=cmd_synth_longform)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toolkit", description="Image captioning and speech recognition with one encoder-decoder design."
    )
    parser.add_argument("--version", action="version", version=f"toolkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("encoders", help="list registered encoders, or timm/torchvision backbones by pattern")
    p.add_argument("--backbones", metavar="PATTERN", help="wildcard over backbone names, e.g. 'resnet*'")
    p.set_defaults(func=cmd_encoders)

    p = sub.add_parser("info", help="describe a saved model bundle")
    p.add_argument("model", help="model bundle directory")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="train a model from a recipe config (YAML) with key=value overrides")
    p.add_argument("config", help="experiment YAML, e.g. recipes/shapes_caption/conf/quick.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.max_minutes=5 model.d_model=256")
    p.add_argument("-o", "--out", required=True, help="experiment directory (checkpoints, logs, bundles)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a model: captioning (BLEU, METEOR, ROUGE-L, CIDEr-D, exact match) "
                                        "or speech recognition (WER, CER, per-voice breakdown)")
    p.add_argument("--model", required=True, help="model bundle directory")
    p.add_argument("--data", required=True, help="captions: COCO / Karpathy JSON or JSONL; speech: JSONL manifest, "
                                                 "Kaldi data dir or LibriSpeech folder")
    p.add_argument("--image-root", help="folder the image paths are relative to (default: the file's folder)")
    p.add_argument("--splits", nargs="*", help="Karpathy splits (e.g. test) or LibriSpeech subsets (test-clean)")
    p.add_argument("--beam", type=_positive_int, help="beam size (captions: 1; speech: the model's saved setting)")
    p.add_argument("--ctc-weight", type=_weight, help="speech: weight of CTC prefix scores in joint beam search")
    _add_lm_options(p, "speech: ")
    p.add_argument("--length-penalty", type=float, default=0.0)
    p.add_argument("--max-length", type=_positive_int, default=40)
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--max-images", type=_positive_int, help="evaluate the first N images / utterances only")
    p.add_argument("--out", help="write scores and per-image predictions to this JSON file")
    p.add_argument("--report", help="write an HTML gallery with attention heatmaps to this file")
    p.add_argument("--gallery-json", metavar="FILE", help="captioning: save the gallery (images, captions, references, "
                                                          "attention) as JSON for `toolkit report`")
    p.add_argument("--report-images", type=_positive_int, default=24,
                   help="images shown in the report / gallery (default: 24)")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR even when Java is installed")
    _add_device_option(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("caption", help="caption images (files, folders or glob patterns)")
    p.add_argument("images", nargs="+", metavar="IMG")
    p.add_argument("--model", required=True, help="model bundle directory")
    p.add_argument("--beam", type=_positive_int, default=1)
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--max-length", type=_positive_int, default=40)
    p.add_argument("--json", action="store_true", help="print JSON instead of tab-separated lines")
    p.add_argument("--report", help="write an HTML gallery with per-word attention heatmaps to this file")
    _add_device_option(p)
    p.set_defaults(func=cmd_caption)

    p = sub.add_parser("transcribe", help="transcribe audio files (any rate/channels; video containers via PyAV)")
    p.add_argument("audio", nargs="+", metavar="AUDIO")
    p.add_argument("--model", required=True, help="model bundle directory")
    p.add_argument("--beam", type=_positive_int, default=4)
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--ctc-weight", type=_weight, help="weight of CTC prefix scores (default: the model's setting)")
    p.add_argument("--ctc-only", action="store_true", help="CTC greedy decoding only (fastest)")
    _add_lm_options(p, "")
    p.add_argument("--vad", choices=["silero", "energy", "none"], default="silero",
                   help="voice activity detector that gates every input (silence and noise give no words) and cuts "
                        "long ones; none: decode every input whole, as it is")
    p.add_argument("--vad-threshold", type=_weight, default=0.5, help="speech probability that starts speech")
    p.add_argument("--max-chunk", type=_positive_number, default=20.0,
                   help="longest stretch decoded at once, seconds: longer input is cut at pauses")
    p.add_argument("--json", action="store_true", help="print JSON (text, then segments with start and end times) "
                                                       "instead of tab-separated lines")
    p.add_argument("--word-times", action="store_true", help="with --json: each segment's words with their times")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_device_option(p)
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("subtitle", help="subtitle audio or video of any length: SRT / WebVTT / JSON, optionally "
                                        "muxed into the video as a soft track")
    p.add_argument("input", metavar="INPUT", help="audio file or video (mp4, mkv, webm, mov, ...)")
    p.add_argument("--model", required=True, help="speech model bundle directory (with a CTC head)")
    p.add_argument("-o", "--out", help="subtitle file to write (default: INPUT with the format's extension)")
    p.add_argument("--format", choices=["srt", "vtt", "json"], help="default: from --out's extension, else srt")
    p.add_argument("--mux", metavar="VIDEO_OUT", help="also write the video with the subtitles as a soft track "
                                                      "(.mkv: srt, .mp4/.mov: mov_text, .webm: webvtt; needs ffmpeg)")
    p.add_argument("--max-line-chars", type=_positive_int, default=42)
    p.add_argument("--max-lines", type=_positive_int, default=2)
    p.add_argument("--max-cps", type=_nonnegative, default=20.0, help="reading speed limit, characters per second")
    p.add_argument("--min-duration", type=_nonnegative, default=1.0, help="seconds a cue stays at least")
    p.add_argument("--max-duration", type=_nonnegative, default=7.0, help="seconds a cue stays at most")
    p.add_argument("--min-gap", type=_nonnegative, default=0.08, help="seconds between cues")
    p.add_argument("--vad", choices=["silero", "energy"], default="silero", help="voice activity detector")
    p.add_argument("--vad-threshold", type=_weight, default=0.5, help="speech probability that starts speech")
    p.add_argument("--max-chunk", type=_positive_number, default=20.0, help="longest stretch decoded at once, seconds")
    p.add_argument("--beam", type=_positive_int, default=4)
    p.add_argument("--batch-size", type=_positive_int, default=8, help="chunks decoded together")
    p.add_argument("--ctc-weight", type=_weight, help="weight of CTC prefix scores (default: the model's setting)")
    _add_lm_options(p, "")
    p.add_argument("--timeline", metavar="JSON", help="score the cues against known speech times (the timeline "
                                                      "`toolkit synth longform` writes): OUT.timing.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_device_option(p)
    p.set_defaults(func=cmd_subtitle)

    p = sub.add_parser("synth", help="make a synthetic corpus: shapes (images + captions, COCO JSON), speech "
                                     "(espeak-ng / flite / MBROLA voices, JSONL manifests) or longform (one long "
                                     "recording with a known timeline, from a speech manifest)")
    _add_synth_parsers(p.add_subparsers(dest="kind", required=True, metavar="KIND"))

    p = sub.add_parser("augment", help="an augmented copy of a speech corpus: voices (WORLD), rooms, noise, babble, "
                                       "telephone / codec channels (toolkit.augment), with a JSONL manifest")
    p.add_argument("manifest", help="the utterances (JSONL manifest, Kaldi dir or LibriSpeech folder)")
    p.add_argument("--out", required=True, help="folder for <name>.jsonl and wav/")
    p.add_argument("--config", help="a SpeechAugmentConfig in YAML (voice, room, noise, channel; default: defaults)")
    p.add_argument("--copies", type=int, default=1, help="augmented copies of every utterance (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="copy c of utterance i is drawn from (seed, c, i) (default: 0)")
    p.add_argument("--keep-clean", action="store_true", help="also list the source utterances in the manifest")
    p.add_argument("--workers", type=int, help="processes (default: CPU count)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. voice.prob=0.8 "
                                                                    "noise.snr_db=[0,20]")
    p.set_defaults(func=cmd_augment)

    p = sub.add_parser("export", help="export a speech, captioning or language model to ONNX, to run with "
                                      "onnxruntime (speech also without PyTorch: recipes/onnx_runtime)")
    p.add_argument("--model", required=True, help="a trained bundle (speech, captioning or language model)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="the export format (default: onnx)")
    p.add_argument("-o", "--out", required=True, help="folder to write; it loads like a bundle (--model OUT)")
    p.add_argument("--quantize", choices=["int8"], help="int8 weights for the matrix products (dynamic quantisation)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("convert", help="convert a caption corpus between COCO, Karpathy and JSONL")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--to", required=True, choices=["coco", "karpathy", "jsonl"])
    p.add_argument("--image-root")
    p.add_argument("--splits", nargs="*")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("report", help="one HTML page of a run: metric tables, loss curves, captions with attention, "
                                      "subtitled videos (from experiment folders)")
    p.add_argument("-o", "--out", required=True, help="the page to write, e.g. exp/quickstart/report.html "
                                                      "(videos go to assets/ next to it)")
    p.add_argument("--caption-exp", metavar="DIR",
                   help="captioning experiment: eval/*.json, train_log.csv, loss_curve.png, gallery.json")
    p.add_argument("--speech-exp", metavar="DIR", help="speech experiment: eval/*.json, train_log.csv, loss_curve.png")
    p.add_argument("--subtitles", metavar="DIR", help="folder of <name>.webm|.mp4 + <name>.vtt (+ <name>.timing.json)")
    p.add_argument("--title", default="toolkit report", help="the page's title")
    p.add_argument("--screenshot", metavar="PNG", help="also render the page in headless Chromium to this PNG")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("smoke", help="train, save, load and decode a tiny captioner end to end (about a minute)")
    p.add_argument("--out", default="exp/smoke", help="output directory (default: exp/smoke)")
    p.add_argument("--steps", type=int, default=150, help="training steps (default: 150)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_smoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # KEY=VALUE overrides may follow options: `toolkit train CONF -o DIR a.b=1`
        if getattr(args, "overrides", None) is not None and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides += extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    rank = int(os.environ.get("RANK", "0"))  # under torchrun, rank 0 alone logs progress
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="%(name)s: %(message)s")
    try:
        if getattr(args, "device", None) is not None:  # a device this machine lacks: refused before any work
            from toolkit.train.distributed import resolve_device

            args.device = resolve_device(args.device)
        args.func(args)
    except ToolkitError as e:
        print(f"toolkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # where the command writes: a folder in place of a file, no permission, a full disk
        name = e.filename2 if e.filename2 is not None else e.filename  # os.replace(tmp, target): the target
        where = f"{name}: " if name is not None else ""
        print(f"toolkit {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"toolkit {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
