"""Second-order MAML learns to fine-tune a tiny BERT cross-encoder on the synthetic rule family.

Meta-trained on 12 tasks (200 meta-steps, 2 tasks each), then each of 4 held-out tasks (8 training
examples) is fine-tuned for 20 AdamW steps from the learned initialisation; No-Meta-Train gets the
same budget from the PEFT initialisation. Measured (seed 0): MAML mean test loss 0.590 and accuracy
0.750; No-Meta 0.695 and 0.505. Asserted margins: 0.05 nats and 0.15 accuracy.
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

    assert mean(ours, "loss") < mean(base, "loss") - 0.05, (ours, base)
    assert mean(ours, "accuracy") > mean(base, "accuracy") + 0.15, (ours, base)
