"""The `toolkit` command line. Each subcommand is a small function; user errors print one line and exit 2."""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
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
    from toolkit.bundle import load_model

    bundle = load_model(args.model)
    cfg = bundle.model.config
    params = sum(p.numel() for p in bundle.model.parameters())
    summary = {
        "encoder": cfg.encoder,
        "d_model": cfg.d_model,
        "decoder_layers": cfg.decoder.num_layers if cfg.decoder else None,
        "ctc": cfg.ctc,
        "tokenizer": f"{bundle.tokenizer.kind} ({bundle.tokenizer.vocab_size} tokens)",
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
    else:
        raise ToolkitError(f"{args.config}: task {task!r} is not known (known: caption, asr)")
    exp = from_dict(Experiment, data, str(args.config))
    r = train(exp, Path(args.out), resume=args.resume)
    print(f"trained {r.steps} steps ({r.epochs} epochs) in {r.seconds / 60:.1f} min, {r.items_per_second:.1f} items/s")
    if r.best_path:
        print(f"best ({exp.train.metric} {r.best_metric:.4f} at step {r.best_step}): {r.best_path}")
    print(f"final: {r.final_path}")
    print(" ".join(f"{k}={v:.4f}" for k, v in r.final_metrics.items()))


def cmd_evaluate_asr(args: argparse.Namespace) -> None:
    from toolkit.decode import DecodingOptions
    from toolkit.metrics.asr import format_wer_table
    from toolkit.tasks.asr import evaluate_asr

    options = None
    if args.beam is not None or args.ctc_weight is not None:
        options = DecodingOptions(beam_size=args.beam or 1, max_length=10_000, max_length_ratio=1.0,
                                  ctc_weight=args.ctc_weight or 0.0)
    report, _ = evaluate_asr(args.model, args.data, args.splits, options, args.max_images, args.out)
    print(format_wer_table(report))
    print(f"wer={report['wer']:.4f} cer={report['cer']:.4f}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from toolkit.bundle import read_bundle_config
    from toolkit.decode import DecodingOptions

    if read_bundle_config(args.model).get("info", {}).get("task") == "asr":
        return cmd_evaluate_asr(args)
    args.beam = args.beam or 1
    from toolkit.metrics import format_table
    from toolkit.tasks.caption import evaluate_captioner

    options = DecodingOptions(beam_size=args.beam, max_length=args.max_length, length_penalty=args.length_penalty)
    scores, rows = evaluate_captioner(
        args.model, args.data, args.image_root, args.splits, options, args.batch_size, args.max_images,
        args.out, meteor=False if args.no_meteor else None,
    )
    print(format_table(scores))
    if args.report:
        from toolkit.pipelines import Captioner
        from toolkit.report import GalleryItem, write_caption_gallery

        shown = rows[: args.report_images]
        results = Captioner.from_pretrained(args.model).caption(
            [r["image"] for r in shown], beam_size=args.beam, max_length=args.max_length,
            length_penalty=args.length_penalty, attention=True,
        )
        items = [GalleryItem(r["image"], res.caption, r["references"], res.tokens, res.attention)
                 for r, res in zip(shown, results)]
        print(f"report: {write_caption_gallery(args.report, items, title=f'{args.data}', metrics=scores)}")
    print(" ".join(f"{k.lower().replace('-', '')}={v:.4f}" for k, v in scores.items()))


def cmd_caption(args: argparse.Namespace) -> None:
    from toolkit.pipelines import Captioner, expand_image_args

    paths = expand_image_args(args.images)
    captioner = Captioner.from_pretrained(args.model)
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
    from toolkit.pipelines import Transcriber

    results = Transcriber.from_pretrained(args.model).transcribe(
        args.audio, beam_size=args.beam, batch_size=args.batch_size, ctc_weight=args.ctc_weight,
        ctc_only=args.ctc_only)
    if args.json:
        print(json.dumps([{"audio": r.source, "text": r.text, "score": round(r.score, 4)} for r in results], indent=1))
    else:
        for r in results:
            print(f"{r.source}\t{r.text}")


def cmd_synth(args: argparse.Namespace) -> None:
    sizes = {k: v for k, v in vars(args).items() if k in SYNTH_OPTIONS[args.kind] and v is not None}
    if args.kind == "shapes":
        from toolkit.data.synth.shapes import ShapesConfig, make_shapes_corpus

        paths = make_shapes_corpus(args.out, ShapesConfig(seed=args.seed, **sizes))
    else:
        from toolkit.data.synth.speech import SpeechSynthConfig, make_speech_corpus

        paths = make_speech_corpus(args.out, SpeechSynthConfig(seed=args.seed, **sizes))
    for split, path in paths.items():
        print(f"{split}: {path}")


SYNTH_OPTIONS = {
    "shapes": {"train", "val", "test_iid", "test_heldout", "image_size", "max_objects"},
    "speech": {"train", "valid", "test_seen", "test_heldout", "workers"},
}


def cmd_convert(args: argparse.Namespace) -> None:
    from toolkit.data import convert_captions

    n = convert_captions(args.src, args.dst, args.to, args.image_root, args.splits)
    print(f"wrote {n} images to {args.dst} ({args.to})")


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
    p.add_argument("--beam", type=int, help="beam size (captions: 1; speech: the model's saved setting)")
    p.add_argument("--ctc-weight", type=float, help="speech: weight of CTC prefix scores in joint beam search")
    p.add_argument("--length-penalty", type=float, default=0.0)
    p.add_argument("--max-length", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-images", type=int, help="evaluate the first N images / utterances only")
    p.add_argument("--out", help="write scores and per-image predictions to this JSON file")
    p.add_argument("--report", help="write an HTML gallery with attention heatmaps to this file")
    p.add_argument("--report-images", type=int, default=24, help="images shown in the report (default: 24)")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR even when Java is installed")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("caption", help="caption images (files, folders or glob patterns)")
    p.add_argument("images", nargs="+", metavar="IMG")
    p.add_argument("--model", required=True, help="model bundle directory")
    p.add_argument("--beam", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=40)
    p.add_argument("--json", action="store_true", help="print JSON instead of tab-separated lines")
    p.add_argument("--report", help="write an HTML gallery with per-word attention heatmaps to this file")
    p.set_defaults(func=cmd_caption)

    p = sub.add_parser("transcribe", help="transcribe audio files (any rate/channels; video containers via PyAV)")
    p.add_argument("audio", nargs="+", metavar="AUDIO")
    p.add_argument("--model", required=True, help="model bundle directory")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--ctc-weight", type=float, help="weight of CTC prefix scores (default: the model's setting)")
    p.add_argument("--ctc-only", action="store_true", help="CTC greedy decoding only (fastest)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tab-separated lines")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("synth", help="make a synthetic corpus: shapes (images + captions, COCO JSON) or speech "
                                     "(espeak-ng / flite voices, JSONL manifests)")
    p.add_argument("kind", choices=sorted(SYNTH_OPTIONS))
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, help="training items (shapes: 6000 images; speech: 3000 utterances)")
    p.add_argument("--val", type=int, help="shapes: validation images (300)")
    p.add_argument("--valid", type=int, help="speech: validation utterances (200)")
    p.add_argument("--test-iid", type=int, help="shapes: i.i.d. test images (500)")
    p.add_argument("--test-seen", type=int, help="speech: test utterances by training voices (300)")
    p.add_argument("--test-heldout", type=int, help="held-out test items: unseen colour-shape pairs / voices")
    p.add_argument("--image-size", type=int, help="shapes: image side in pixels (128)")
    p.add_argument("--max-objects", type=int, choices=[1, 2, 3], help="shapes: objects per image, at most (3)")
    p.add_argument("--workers", type=int, help="speech: synthesis processes (default: CPU count)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("convert", help="convert a caption corpus between COCO, Karpathy and JSONL")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--to", required=True, choices=["coco", "karpathy", "jsonl"])
    p.add_argument("--image-root")
    p.add_argument("--splits", nargs="*")
    p.set_defaults(func=cmd_convert)

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
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        args.func(args)
    except ToolkitError as e:
        print(f"toolkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"toolkit {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
