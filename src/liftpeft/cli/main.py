"""``liftpeft`` entry point."""

from __future__ import annotations

import argparse
import sys

from liftpeft import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liftpeft",
        description="Learning to fine-tune: meta-learn a Bayesian prior over PEFT adapters (LiFT).",
    )
    parser.add_argument("--version", action="version", version=f"liftpeft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the main job on the embedded default")
    demo.set_defaults(func=_demo)
    return parser


def _demo(args: argparse.Namespace) -> int:
    print("liftpeft demo: the end-to-end demo arrives with the benchmarks (issue 4).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
