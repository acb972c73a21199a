"""``PriorTrainer`` / ``PriorTrainerMixin``: the prior inside a transformers Trainer (and TRL's SFTTrainer)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, DataCollatorForLanguageModeling, TrainingArguments

from liftpeft.peft_integration.prior_trainer import (
    PriorTrainer,
    PriorTrainerMixin,
    PriorTrainingConfig,
    prior_peft_config,
    prior_peft_model,
)
from tests.hub.conftest import make_prior

TEXTS = [
    "abab abab",
    "cdcd cdcd",
    "abcd abcd",
    "dcba dcba",
    "aaaa bbbb",
    "cccc dddd",
    "abba abba",
    "cddc cddc",
]


def _args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        max_steps=6,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    return TrainingArguments(**{**base, **kw})


@pytest.fixture(scope="module")
def lm_data(tiny_models):
    tok = AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    return tok, [tok(t) for t in TEXTS], DataCollatorForLanguageModeling(tok, mlm=False)


def _theta(model, prior):
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1) for n in prior.backbone["spec"]["names"]])


def _zero_data_loss(outputs, labels, num_items_in_batch=None):
    return outputs.logits.sum() * 0.0  # no data: only the prior acts


def test_the_trainers_gradient_is_the_priors_log_density_gradient(gpt2_backbone, lm_data, tmp_path):
    _tok, train, collator = lm_data
    prior = make_prior(gpt2_backbone, k=2, variance=1e-3, beta=0.02)
    model = prior_peft_model(prior)
    trainer = PriorTrainer(
        model=model,
        args=_args(tmp_path, gradient_accumulation_steps=2),
        train_dataset=train,
        data_collator=collator,
        compute_loss_func=_zero_data_loss,
        prior=prior,
        prior_config=PriorTrainingConfig(init_from_prior=False, tau=2.0),
    )
    with torch.no_grad():  # away from the means, so the gradient is not ~0
        for _n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn_like(p))
    batch = collator(train[:4])
    trainer.training_step(model, batch)
    trainer.training_step(model, batch)  # two accumulated micro-batches: the prior counts once

    theta = _theta(model, prior).double().requires_grad_(True)
    log_p = prior.mixture_prior().log_prob(theta)  # float64, autograd through the density itself
    (expected,) = torch.autograd.grad(-(2.0 / len(train)) * log_p, theta)  # weight tau / n
    params = dict(model.named_parameters())
    got = torch.cat([params[n].grad.reshape(-1) for n in prior.backbone["spec"]["names"]]).double()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))
    assert trainer.prior_weight == pytest.approx(2.0 / 8)


def test_with_no_data_map_moves_the_adapter_to_the_prior_mean(gpt2_backbone, lm_data, tmp_path):
    _tok, train, collator = lm_data
    prior = make_prior(gpt2_backbone, k=1, variance=1e-3, beta=0.02)
    model = prior_peft_model(prior)  # at the prior's mean, then moved away from it
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05)
    start = float((_theta(model, prior) - prior.means[0]).norm())
    trainer = PriorTrainer(
        model=model,
        args=_args(tmp_path, max_steps=30, learning_rate=5e-3),
        train_dataset=train,
        data_collator=collator,
        compute_loss_func=_zero_data_loss,
        prior=prior,
        prior_config={"init_from_prior": False},  # a dict of PriorTrainingConfig's fields works too
    )
    trainer.train()
    end = float((_theta(model, prior) - prior.means[0]).norm())
    assert end < 0.3 * start
    nll = [r["prior_nll"] for r in trainer.state.log_history if "prior_nll" in r]
    assert len(nll) == 30 and nll[-1] < nll[0]


def test_map_lowers_the_data_loss_plus_the_weighted_prior(gpt2_backbone, lm_data, tmp_path):
    _tok, train, collator = lm_data
    prior = make_prior(gpt2_backbone, k=2, variance=0.5, beta=0.5)  # wide enough for the data to move it
    model = prior_peft_model(prior)
    batch = collator(train)

    def objective() -> float:
        with torch.no_grad():
            model.eval()
            data = model(**batch).loss
        return float(data) + float(prior.penalty(model, scale=1 / len(train)).detach())

    trainer = PriorTrainer(
        model=model,
        args=_args(tmp_path, max_steps=15, learning_rate=3e-2, per_device_train_batch_size=8),
        train_dataset=train,
        data_collator=collator,
        prior=prior,
    )
    before = objective()
    trainer.train()
    assert objective() < before - 0.01
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert losses[-1] < losses[0]  # the logged loss is the data loss alone


def _sgld_run(prior, lm_data, tmp_path, seed: int):
    _tok, train, collator = lm_data
    model = prior_peft_model(prior)
    trainer = PriorTrainer(
        model=model,
        args=_args(
            tmp_path, max_steps=4, learning_rate=1e-3, max_grad_norm=0.0, lr_scheduler_type="constant"
        ),
        train_dataset=train,
        data_collator=collator,
        compute_loss_func=_zero_data_loss,
        prior=prior,
        prior_config=PriorTrainingConfig(mode="sgld", temperature=1.0, seed=seed),
    )
    start = _theta(model, prior).clone()
    trainer.train()
    return start, _theta(model, prior), trainer


def test_sgld_adds_the_stated_noise_with_a_fixed_seed(gpt2_backbone, lm_data, tmp_path):
    prior = make_prior(gpt2_backbone, k=1, variance=1e-3, beta=0.02)
    start, a, trainer = _sgld_run(prior, lm_data, tmp_path, seed=3)
    _, b, _ = _sgld_run(prior, lm_data, tmp_path, seed=3)
    _, c, _ = _sgld_run(prior, lm_data, tmp_path, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)  # the noise is the seed's
    assert (
        type(
            trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
        ).__name__
        == "LangevinSGD"
    )
    # replay the chain by hand: theta <- theta - lr (tau/n) grad(-log p) + sqrt(2 lr T tau / n) z
    lr, weight = 1e-3, 1 / 8
    mp = prior.mixture_prior()
    g = torch.Generator().manual_seed(3)
    theta = start.clone()
    params = dict(prior_peft_model(prior).named_parameters())
    shapes = [params[n].shape for n in prior.backbone["spec"]["names"]]
    for _ in range(4):
        grad = -weight * mp.grad_log_prob(theta)
        noise = torch.cat([torch.randn(s, generator=g).reshape(-1) for s in shapes])
        theta = theta - lr * grad + (2 * lr / (1 / weight)) ** 0.5 * noise
    torch.testing.assert_close(a, theta, rtol=1e-5, atol=1e-6)


def test_sgld_refuses_clipping_weight_decay_and_an_unstable_step(gpt2_backbone, lm_data, tmp_path):
    _tok, train, _collator = lm_data
    prior = make_prior(gpt2_backbone, k=1)
    sgld = PriorTrainingConfig(mode="sgld")
    with pytest.raises(ValueError, match="max_grad_norm=0"):
        PriorTrainer(
            model=prior_peft_model(prior),
            args=_args(tmp_path),
            train_dataset=train,
            prior=prior,
            prior_config=sgld,
        )
    with pytest.raises(ValueError, match="weight_decay=0"):
        PriorTrainer(
            model=prior_peft_model(prior),
            args=_args(tmp_path, max_grad_norm=0.0, weight_decay=0.1),
            train_dataset=train,
            prior=prior,
            prior_config=sgld,
        )
    with pytest.raises(ValueError, match="Lower learning_rate below"):
        PriorTrainer(
            model=prior_peft_model(prior),
            args=_args(tmp_path, max_grad_norm=0.0, learning_rate=10.0),
            train_dataset=train,
            prior=prior,
            prior_config=sgld,
        )
    with pytest.raises(ValueError, match="mode must be one of"):
        PriorTrainingConfig(mode="adam")


def test_a_model_without_the_priors_adapter_is_refused(gpt2_backbone, lm_data, tiny_models, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    _tok, train, _collator = lm_data
    prior = make_prior(gpt2_backbone)
    other = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"]), LoraConfig(r=2, target_modules=["c_proj"])
    )
    with pytest.raises(ValueError, match="the prior was fitted on"):
        PriorTrainer(model=other, args=_args(tmp_path), train_dataset=train, prior=prior)


def test_the_mixin_composes_with_trls_sft_trainer(gpt2_backbone, tiny_models, tmp_path):
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")

    class PriorSFTTrainer(PriorTrainerMixin, trl.SFTTrainer):
        pass

    prior = make_prior(gpt2_backbone, k=2, variance=1e-2, beta=0.1)
    model = prior_peft_model(prior)
    tok = AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    config = trl.SFTConfig(
        output_dir=str(tmp_path / "sft"),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        max_length=32,
        disable_tqdm=True,
    )
    trainer = PriorSFTTrainer(
        model=model,
        args=config,
        train_dataset=datasets.Dataset.from_dict({"text": TEXTS}),
        processing_class=tok,
        prior=prior,
        prior_config=PriorTrainingConfig(n_examples=len(TEXTS)),
    )
    start = _theta(model, prior).clone()
    assert torch.equal(start, prior.means[int(prior.weights.argmax())])
    trainer.train()
    assert not torch.equal(_theta(trainer.model, prior), start)
    logged = [r for r in trainer.state.log_history if "loss" in r]
    assert len(logged) == 3 and all("prior_nll" in r for r in logged)


def test_sft_trainer_wrapping_the_base_model_with_the_priors_peft_config(
    gpt2_backbone, tiny_models, tmp_path
):
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from transformers import AutoModelForCausalLM

    class PriorSFTTrainer(PriorTrainerMixin, trl.SFTTrainer):
        pass

    prior = make_prior(gpt2_backbone, k=1, variance=1e-2, beta=0.1)
    config = trl.SFTConfig(
        output_dir=str(tmp_path / "sft"),
        max_steps=2,
        per_device_train_batch_size=4,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        max_length=32,
        disable_tqdm=True,
    )
    trainer = PriorSFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"]),
        peft_config=prior_peft_config(prior),
        args=config,
        train_dataset=datasets.Dataset.from_dict({"text": TEXTS}),
        processing_class=AutoTokenizer.from_pretrained(tiny_models["gpt2"]),
        prior=prior,
    )
    assert torch.equal(_theta(trainer.model, prior), prior.means[0])  # SFTTrainer's adapter, at the mean
    trainer.train()
    assert any("prior_nll" in r for r in trainer.state.log_history)
