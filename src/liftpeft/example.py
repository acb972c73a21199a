"""An example workspace for the README's tour: a tiny local model and a task collection.

``write_example(out)`` writes, offline and in seconds:

- ``out/model/``: a tiny random BERT with a character tokenizer (a ``transformers`` directory);
- ``out/tasks/train/<task>/`` and ``out/tasks/test/<task>/``: the synthetic rule family
  (``liftpeft.data.synthetic``), binary multiple-choice tasks for meta-training and held out;
- ``out/bench.yaml``: a small config of the ``rule-family`` benchmark for ``liftpeft bench``;
- ``out/EXAMPLE.md``: what is there and the commands to try.

``out`` is claimed like every liftpeft output (``liftpeft.outputs``): a foreign non-empty directory
is refused untouched; ``overwrite=True`` replaces an earlier example's own files only.
"""

from __future__ import annotations

import os
from pathlib import Path

from liftpeft.outputs import claim_output

N_TRAIN_TASKS = 8
N_TEST_TASKS = 4

# The rule-family benchmark, shrunk to run in about a minute on two CPU cores (the shipped config,
# ``liftpeft bench --benchmark rule-family``, is the full one).
BENCH_CONFIG = """\
# The rule-family benchmark, small enough for a laptop tour (about a minute on two CPU cores).
# The full benchmark: liftpeft bench --benchmark rule-family --out results/rule-family
benchmark: rule-family
settings:
  n_train_tasks: 8
  n_dev_tasks: 1
  n_test_tasks: 4
  n_train_examples: 8
  max_length: 32
methods:
  lift: {k: 2, sigma: 1.0, beta: 1.0, tau: 0.001, step_size: 0.01, warmup_lr: 0.01,
         steps: 200, thin: 5, batch_size: 4, adapt_steps: 10, adapt_batch_size: 4}
  no-meta: {adapt_steps: 10, adapt_lr: 0.01, adapt_batch_size: 4}
  union: {meta_steps: 100, meta_lr: 0.01, meta_batch_size: 4, adapt_steps: 10, adapt_lr: 0.01,
          adapt_batch_size: 4}
default_methods: [lift, no-meta, union]
reference: lift
"""


def tour_commands(out: str = "example") -> list[str]:
    """The README's tour after ``liftpeft example --out OUT``: what EXAMPLE.md suggests."""
    test = f"{out}/tasks/test"
    return [
        f"liftpeft meta-train --model {out}/model --tasks {out}/tasks/train --out prior --k 2 --steps 200",
        f"liftpeft adapt --prior prior --task {test}/task-000 --out adapters/task-000 --steps 20",
        f"liftpeft evaluate --model {out}/model --adapter adapters/task-000 --task {test}/task-000 --json",
        "liftpeft info prior",
        f"liftpeft meta-train --method maml --model {out}/model --tasks {out}/tasks/train --out maml "
        "--set meta_steps=40",
        f"liftpeft adapt --prior maml --task {test}/task-000 --out adapters/maml-000 --steps 20",
        f"liftpeft adapt --prior prior --task {test}/task-001 --out adapters/task-001 --steps 20",
        "liftpeft zoo-prior --adapters adapters --k 2 --out zoo-prior",
        "liftpeft methods",
        f"liftpeft bench --config {out}/bench.yaml --methods lift,no-meta,union --seeds 1 --out results/example",
        "liftpeft report results/example",
        f"liftpeft compare --model {out}/model --tasks {out}/tasks/train --test-tasks {test} "
        f"--config {out}/bench.yaml --methods lift,no-meta --seeds 1 --out results/mine",
    ]


def _readme(out: Path, n_train: int, n_test: int) -> str:
    name = out.name or "."
    commands = "\n".join(tour_commands(name))
    return f"""# liftpeft example workspace

Written by `liftpeft example --out {name}`. Everything here is local and tiny, so each command
below finishes in seconds to a minute on a CPU, offline.

- `model/`: a tiny random BERT (2 layers, hidden size 32) with a character tokenizer, a plain
  `transformers` directory (`AutoModel.from_pretrained("{name}/model")` loads it).
- `tasks/train/`: {n_train} meta-training tasks; `tasks/test/`: {n_test} held-out tasks. Each task
  folder holds `train.jsonl`, `dev.jsonl` and `test.jsonl`, one multiple-choice example a line:
  `{{"input": "abcfed...", "options": ["yes", "no"], "label": 0}}`. A task's hidden rule is "yes
  when the string has more `a` than `b`" (or `c` than `d`); tasks of one rule share it.
- `bench.yaml`: a small config of the `rule-family` benchmark for `liftpeft bench`.

The model is random, so the scores say little; the commands are the point. Try, from the folder
that holds `{name}/`:

```bash
{commands}
```

Then swap in your own model (`--model` takes any local `transformers` directory or hub id) and
your own folder of task folders. `liftpeft COMMAND --help` shows every option.
"""


def write_example(
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    n_tasks: int = N_TRAIN_TASKS,
    n_test_tasks: int = N_TEST_TASKS,
    seed: int = 0,
) -> Path:
    """Write the example workspace into ``out`` (see the module doc) and return ``out``.

    A new or empty ``out`` is created; one holding an earlier example is replaced only with
    ``overwrite=True`` (its own entries; a user's other files stay); anything else is refused
    with ``OutputError`` and left as it was. The files appear together or not at all.
    """
    from liftpeft.data.synthetic import write_rule_family
    from liftpeft.peft_integration.tiny import make_tiny_model

    target = claim_output(out, "example", overwrite=overwrite, publish=True)
    with target, target.build() as tmp:
        make_tiny_model("bert", tmp / "model", seed=seed)
        write_rule_family(tmp / "tasks", n_tasks=n_tasks, n_test_tasks=n_test_tasks, seed=seed)
        (tmp / "bench.yaml").write_text(BENCH_CONFIG)
        (tmp / "EXAMPLE.md").write_text(_readme(Path(out), n_tasks, n_test_tasks))
    return target.path
