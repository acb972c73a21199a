"""``liftpeft`` entry point: argument parsing only; every command calls the library (``commands``)."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from liftpeft import __version__

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _sub(sub, name: str, help: str, example: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML or TOML file of settings (flags override it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return parser


def _overwrite(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace a liftpeft {kind} already in --out (only its own files; anything else is kept)",
    )


# What a Ctrl-C leaves behind, per command (the default: nothing half-written).
_INTERRUPTED = {
    "meta-train": "the last checkpoint is kept in --out; rerun the same command with --resume to continue",
    "bench": "finished results are kept in --out; rerun the same command to continue",
    "compare": "finished results are kept in --out; rerun the same command to continue",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liftpeft",
        description="Learning to fine-tune: meta-learn a Bayesian prior over PEFT adapters (LiFT) "
        "and fine-tune new tasks under it.",
        epilog="Run `liftpeft COMMAND --help` for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"liftpeft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _sub(sub, "demo", "run the main job on the embedded default", "liftpeft demo")
    p.set_defaults(handler="demo")

    p = _sub(
        sub,
        "example",
        "write an example workspace (tiny local model, task folders, EXAMPLE.md) for the README's tour",
        "liftpeft example --out example",
    )
    p.add_argument("--out", help="directory that receives model/, tasks/, bench.yaml and EXAMPLE.md")
    _overwrite(p, "example")
    p.set_defaults(handler="example")

    p = _sub(
        sub,
        "meta-train",
        "meta-train LiFT (or any method: --method) on a folder of tasks",
        "liftpeft meta-train --model ./my-model --tasks ./tasks --out ./prior --k 5 --steps 2000",
    )
    p.add_argument("--method", help="registered method (default lift; `liftpeft methods` lists them)")
    p.add_argument("--model", help="base model: local transformers directory or hub id")
    p.add_argument("--tasks", help="folder of task folders (<task>/train.jsonl ...)")
    p.add_argument("--out", help="output directory for the prior, checkpoints and metrics log")
    p.add_argument("--k", type=int, help="LiFT: mixture components (default 5)")
    p.add_argument("--steps", type=int, help="LiFT: meta-training steps (default 20000)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its checkpoint")
    p.add_argument(
        "--checkpoint-every", type=int, help="meta-steps between checkpoints (default: the method's)"
    )
    _overwrite(p, "meta-trained state")
    p.add_argument(
        "--tensorboard", action="store_true", help="also log to OUT/tensorboard (needs tensorboard)"
    )
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="any setting of the method, e.g. --set sigma=0.05"
    )
    p.set_defaults(handler="meta_train")

    p = _sub(
        sub,
        "zoo-prior",
        "build a prior from already fine-tuned peft adapters (no meta-training)",
        "liftpeft zoo-prior --adapters ./zoo/task-a ./zoo/task-b ./zoo/task-c --k 2 --out ./prior",
    )
    p.add_argument(
        "--adapters",
        nargs="+",
        metavar="DIR|HUB_ID",
        help="peft adapter directories or folders of them, or Hub ids (owner/name[/sub][@revision]); "
        "all are checked first: one base model (name and weights), PEFT type, rank, target modules, every tensor",
    )
    p.add_argument("--out", help="output directory for the prior")
    p.add_argument("--k", type=int, help="mixture components (default 5)")
    p.add_argument("--beta", type=float, help="std of a task's adapter around its component (default 0.01)")
    p.add_argument("--sigma", type=float, help="std of the top-level prior (default 0.01)")
    p.add_argument("--seed", type=int, help="seed of the k-means++ initialisation (default 0)")
    p.add_argument("--model", help="where the base model is, if it moved since the adapters were made")
    _overwrite(p, "meta-trained state")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="test-time LiFT setting stored with the prior"
    )
    p.set_defaults(handler="zoo_prior")

    p = _sub(
        sub,
        "adapt",
        "adapt to a new task under a learned prior; writes a peft adapter",
        "liftpeft adapt --prior ./prior --task ./tasks/new-task --out ./adapter --steps 100",
    )
    p.add_argument(
        "--prior", help="directory written by meta-train (any method) or zoo-prior, or a prior's Hub repo id"
    )
    p.add_argument("--revision", help="branch, tag or commit of a Hub prior (default main)")
    p.add_argument("--task", help="task folder with train.jsonl")
    p.add_argument("--out", help="output directory of the peft adapter")
    p.add_argument("--model", help="where the base model is, if it moved since meta-training")
    p.add_argument("--steps", type=int, help="adaptation steps (default: the prior's setting)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    _overwrite(p, "adapter")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="test-time setting, e.g. --set adapt_method=map"
    )
    p.set_defaults(handler="adapt")

    p = _sub(
        sub,
        "evaluate",
        "score a model (optionally with an adapter) on a task split",
        "liftpeft evaluate --model ./my-model --adapter ./adapter --task ./tasks/new-task --json",
    )
    p.add_argument("--model", help="base model: local transformers directory or hub id")
    p.add_argument("--adapter", help="peft adapter directory (default: the untrained PEFT initialisation)")
    p.add_argument("--task", help="task folder")
    p.add_argument("--split", choices=["train", "dev", "test"], help="split to score (default test)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler="evaluate")

    p = _sub(sub, "info", "show what a prior or adapter directory holds", "liftpeft info ./prior")
    p.add_argument("path", nargs="?", help="a prior directory, a peft adapter directory or a prior's Hub id")
    p.add_argument("--revision", help="branch, tag or commit of a Hub prior (default main)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler="info")

    p = _sub(
        sub,
        "push-prior",
        "upload a LiFT prior with a generated model card to the Hugging Face Hub",
        "liftpeft push-prior ./prior your-name/lift-prior --private",
    )
    p.add_argument("path", nargs="?", help="prior directory written by meta-train or zoo-prior")
    p.add_argument("repo_id", nargs="?", help="Hub repo id (owner/name); created if missing")
    p.add_argument("--private", action="store_true", default=None, help="create the repo private")
    p.add_argument("--revision", help="branch to commit to (created if missing; default main)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.add_argument("--commit-message", help="commit message (default: a description of the prior)")
    p.add_argument("--base-model", help="Hub id of the base model for the card (default: from the prior)")
    p.set_defaults(handler="push_prior")

    p = _sub(sub, "methods", "list every method with a one-line description", "liftpeft methods")
    p.set_defaults(handler="methods")

    p = _sub(
        sub,
        "bench",
        "run a grid of methods x seeds on a benchmark (resumable)",
        "liftpeft bench --benchmark shakespeare --methods lift,no-meta,union --seeds 3 --out results/shakespeare",
    )
    p.add_argument(
        "--benchmark",
        help="registered benchmark (shakespeare, bigbench-cls, bigbench-gen, vision-xdomain, rule-family; "
        "GPU + hub data: crossfit-bart, crossfit-flan-t5, vtab-1k)",
    )
    p.add_argument("--methods", help="comma-separated methods or config variants (default: the config's)")
    p.add_argument("--seeds", type=int, help="number of seeds 0..N-1 (default 3)")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="run seeds S..S+N-1 instead (split one grid over machines; results of the same command merge)",
    )
    p.add_argument(
        "--split", choices=["test", "dev"], help="meta-test tasks (default) or meta-dev tasks for tuning"
    )
    p.add_argument("--out", help="results directory (rerun the same command to resume)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="benchmark setting, e.g. --set max_test_tasks=10"
    )
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="DIR",
        help="instead of running: merge these results directories (a grid split over processes) into --out",
    )
    p.set_defaults(handler="bench")

    p = _sub(
        sub,
        "compare",
        "compare methods on your own task folders (same grid, resume and report as bench)",
        "liftpeft compare --model ./my-model --tasks ./tasks --methods lift,no-meta,union --seeds 3 --out cmp",
    )
    p.add_argument("--model", help="base model: local transformers directory or hub id")
    p.add_argument(
        "--tasks",
        help="folder of task folders; without --test-tasks, a fixed rule holds 20%% out for testing",
    )
    p.add_argument("--test-tasks", help="folder of meta-test task folders (then --tasks are all meta-train)")
    p.add_argument(
        "--methods", help="comma-separated methods or config variants (default lift,no-meta,union)"
    )
    p.add_argument("--seeds", type=int, help="number of seeds 0..N-1 (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="run seeds S..S+N-1 instead")
    p.add_argument("--split", choices=["test", "dev"], help="meta-test tasks (default) or meta-dev tasks")
    p.add_argument("--out", help="results directory (rerun the same command to resume)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="setting, e.g. --set test_fraction=0.3 or --set max_length=128 (methods' settings: --config)",
    )
    p.set_defaults(handler="compare")

    p = _sub(
        sub,
        "report",
        "write a Markdown report with tables and plots of a results directory",
        "liftpeft report results/shakespeare",
    )
    p.add_argument("results", nargs="?", help="results directory written by `liftpeft bench`")
    p.add_argument("--out", help="where to write report.md and the plots (default: the results directory)")
    p.set_defaults(handler="report")

    tasks = sub.add_parser(
        "tasks", help="make task folders", description="make task folders (see docs/datasets.md)"
    )
    tasks_sub = tasks.add_subparsers(dest="tasks_action", metavar="ACTION")
    p = _sub(
        tasks_sub,
        "from-datasets",
        "write a task collection from `datasets` sources (Dataset dirs, data files, hub ids)",
        "liftpeft tasks from-datasets ./reviews.jsonl --input text --label stars --choices 1,2,3,4,5 "
        "--train-size 32 --dev-size 32 --out ./tasks",
    )
    p.add_argument(
        "sources",
        nargs="*",
        metavar="[NAME=]SOURCE",
        help="save_to_disk directory, data file (.jsonl .csv .parquet ...), data directory or hub id",
    )
    p.add_argument("--out", help="directory that receives <task>/{train,dev,test}.jsonl and tasks.json")
    p.add_argument("--input", help="input text column (choice and text-to-text tasks)")
    p.add_argument("--label", help="label column (an index or an option text): multiple-choice tasks")
    p.add_argument("--options", help="column of per-row option lists (else --choices or ClassLabel names)")
    p.add_argument("--choices", help="comma-separated option texts shared by every row")
    p.add_argument("--target", help="target text column: text-to-text tasks")
    p.add_argument("--text", help="text column: language-modelling tasks")
    p.add_argument("--task-column", help="column whose values split a source into tasks")
    p.add_argument("--keep-tasks", help="comma-separated values of --task-column to keep (default all)")
    p.add_argument(
        "--splits", help="source split -> task split, e.g. train=train,validation=test (default: by name)"
    )
    p.add_argument(
        "--train-size", type=int, help="carve this many train examples per task off the train rows"
    )
    p.add_argument("--dev-size", type=int, help="and this many dev examples (with --train-size)")
    p.add_argument("--max-examples", type=int, help="cap on the examples of every split of every task")
    p.add_argument("--streaming", action="store_true", help="stream the sources (read only what is needed)")
    p.add_argument("--shuffle-seed", type=int, help="shuffle every split with this seed first")
    p.add_argument("--subset", help="hub dataset configuration name (load_dataset's name)")
    p.add_argument("--revision", help="hub dataset revision")
    p.add_argument("--cache-dir", help="datasets cache directory (default: datasets' own)")
    _overwrite(p, "task collection")
    p.set_defaults(handler="tasks_from_datasets")

    p = _sub(
        sub,
        "data",
        "fetch benchmark data into the cache (~/.cache/liftpeft or $LIFTPEFT_CACHE)",
        "liftpeft data fetch shakespeare",
    )
    p.add_argument("action", choices=["fetch"], help="what to do")
    p.add_argument(
        "dataset",
        choices=["shakespeare", "bigbench", "bigbench-gen", "smollm2", "vision"],
        help="which data set (smollm2: the bigbench-gen model, converted to safetensors)",
    )
    p.set_defaults(handler="data")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command line as given, recorded beside results
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from liftpeft.cli import commands

    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        return int(getattr(commands, args.handler)(args) or EXIT_OK)
    except commands.UsageError as err:
        print(f"liftpeft {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        left = _INTERRUPTED.get(args.command, "nothing half-written was left behind")
        print(f"liftpeft {args.command}: interrupted; {left}", file=sys.stderr)
        return 130
    except Exception as err:  # one clear line for users; --debug shows the traceback
        if getattr(args, "debug", False):
            traceback.print_exc()
        else:
            print(f"liftpeft {args.command}: error: {commands.describe_error(err)}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
