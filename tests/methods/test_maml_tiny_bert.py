"""Second-order MAML learns to fine-tune a tiny BERT cross-encoder on the synthetic rule family.

Meta-trained on 12 tasks (200 meta-steps, 2 tasks each), then each of 4 held-out tasks (8 training
examples) is fine-tuned for 20 AdamW steps from the learned initialisation; No-Meta-Train gets the
same budget from the PEFT initialisation. Measured (seed 0, torch 2.13.0, transformers 5.24.0,
peft 0.21.2): MAML mean test accuracy 0.693 and loss 0.709; No-Meta 0.505 and 0.695.

Accuracy is the robust signal: over five nearby settings (meta_lr 3e-3/1e-2, inner_lr 0.1/0.2,
100/200 meta-steps) MAML's accuracy stayed in 0.69-0.76 while its mean log loss moved between 0.636
and 0.727, because the learned initialisation makes confident predictions and a few confident errors
dominate the mean loss (an earlier library stack measured 0.590). So the test asserts the accuracy
margin (0.15) and only that the loss does not collapse (at most 0.05 nats above No-Meta's).
"""

from liftpeft.methods import MetaProblem, build_method
from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective
from liftpeft.tasks import read_task_collection

ADAPT = dict(adapt_steps=20, adapt_lr=1e-2, adapt_batch_size=8)


def test_maml_beats_no_meta_on_held_out_rule_tasks(tiny_models, rule_tasks):
    backbone = PeftBackbone(tiny_models["bert"])
    train = [PeftTaskObjective(backbone, t) for t in read_task_collection(rule_tasks / "train")]
    problem = MetaProblem(train, backbone.theta0, description=backbone.describe())
    maml = build_method(
        "maml", meta_steps=200, meta_lr=1e-2, inner_lr=0.2, meta_batch_size=8, tasks_per_step=2, **ADAPT
    )
    init = maml.meta_train(problem, seed=0)
    no_meta = build_method("no-meta", **ADAPT)
    ours, base = [], []
    for task in read_task_collection(rule_tasks / "test"):
        task.train = task.train[:8]
        objective = PeftTaskObjective(backbone, task)
        ours.append(objective.evaluate(maml.adapt(init, objective, seed=0)))
        base.append(objective.evaluate(no_meta.adapt(backbone.theta0, objective, seed=0)))

    def mean(rows, key):
        return sum(r[key] for r in rows) / len(rows)

    assert mean(ours, "accuracy") > mean(base, "accuracy") + 0.15, (ours, base)
    assert mean(ours, "loss") < mean(base, "loss") + 0.05, (ours, base)
