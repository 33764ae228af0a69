"""The `toolkit` command line. Each subcommand is a small function; user errors print one line and exit 2."""

from __future__ import annotations

import argparse
import fnmatch
import json
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

    p = sub.add_parser("smoke", help="train, save, load and decode a tiny captioner end to end (about a minute)")
    p.add_argument("--out", default="exp/smoke", help="output directory (default: exp/smoke)")
    p.add_argument("--steps", type=int, default=150, help="training steps (default: 150)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_smoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
