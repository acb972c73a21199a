"""Priors on the Hub: save_pretrained / from_pretrained (offline, from a Hub-layout cache) / push_to_hub."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import CommitOperationAdd, ModelCard

from liftpeft import hub
from liftpeft.cli.main import main
from liftpeft.learned_prior import LearnedPrior
from liftpeft.outputs import OutputError
from tests.hub.conftest import FakeHub, lay_out_hub_cache, make_prior

SHA1 = "1" * 40
SHA2 = "2" * 40


def _same(a: LearnedPrior, b: LearnedPrior) -> None:
    for name in ("weights", "means", "covariances", "center"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert (a.beta, a.sigma, a.task_names, a.backbone) == (b.beta, b.sigma, b.task_names, b.backbone)


def test_save_pretrained_writes_the_prior_format_and_a_model_card(gpt2_prior, tmp_path):
    out = gpt2_prior.save_pretrained(
        tmp_path / "p",
        base_model="owner/tiny-gpt2",
        results={"lift": {"accuracy": 0.61}, "no-meta": {"accuracy": 0.55}},
    )
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "README.md",
        "prior.json",
        "prior.safetensors",
    ]
    assert json.loads((out / "prior.json").read_text())["format"] == "liftpeft-prior/1"
    _same(LearnedPrior.load(out), gpt2_prior)  # the ordinary prior directory, readable by load()
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "liftpeft"
    assert card.data.base_model == "owner/tiny-gpt2"
    assert {"liftpeft", "lift", "lora"} <= set(card.data.tags)
    assert card.data.to_dict()["liftpeft"]["components"] == 2
    assert "task-000" in card.text and "task-004" in card.text  # the tasks it was fitted on
    assert "| `adapt_steps` | 3 |" in card.text  # its settings
    assert "| lift | 0.61 |" in card.text and "| no-meta | 0.55 |" in card.text  # results


def test_a_local_base_model_is_named_in_the_text_not_as_base_model(gpt2_prior, tmp_path):
    card = ModelCard.load(gpt2_prior.save_pretrained(tmp_path / "p") / "README.md")
    assert card.data.base_model is None  # a local path is not a Hub id; the Hub would refuse it
    assert gpt2_prior.backbone["model"] in card.text


def test_base_model_is_the_repo_id_of_a_hub_cache_snapshot(gpt2_backbone, tmp_path):
    prior = make_prior(gpt2_backbone)
    prior.backbone = {**prior.backbone, "model": f"/x/hub/models--acme--tiny-gpt2/snapshots/{SHA1}"}
    card = ModelCard.load(prior.save_pretrained(tmp_path / "p") / "README.md")
    assert card.data.base_model == "acme/tiny-gpt2"


def test_save_pretrained_never_overwrites_a_users_files(gpt2_prior, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not empty"):
        gpt2_prior.save_pretrained(mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    out = gpt2_prior.save_pretrained(tmp_path / "p")
    with pytest.raises(OutputError, match="overwrite"):
        gpt2_prior.save_pretrained(out)
    other = make_prior_like(gpt2_prior, seed=3)
    other.save_pretrained(out, overwrite=True)
    _same(LearnedPrior.from_pretrained(out), other)


def make_prior_like(prior: LearnedPrior, seed: int) -> LearnedPrior:
    g = torch.Generator().manual_seed(seed)
    return LearnedPrior(
        weights=prior.weights,
        means=prior.means + torch.randn(prior.means.shape, generator=g),
        covariances=prior.covariances,
        center=prior.center,
        beta=prior.beta,
        sigma=prior.sigma,
        backbone=prior.backbone,
        task_names=prior.task_names,
    )


def test_from_pretrained_reads_the_hub_cache_offline(gpt2_prior, tmp_path, monkeypatch):
    newer = make_prior_like(gpt2_prior, seed=1)
    newer.siblings = {1: make_prior_like(gpt2_prior, seed=2)}
    cache = tmp_path / "cache"
    lay_out_hub_cache(
        cache, "acme/lift-prior", gpt2_prior.save_pretrained(tmp_path / "v1"), SHA1, refs=("v1",)
    )
    lay_out_hub_cache(cache, "acme/lift-prior", newer.save_pretrained(tmp_path / "v2"), SHA2, refs=("main",))
    latest = LearnedPrior.from_pretrained("acme/lift-prior", cache_dir=cache)
    _same(latest, newer)
    assert sorted(latest.siblings) == [1]  # a K sweep's other mixtures (k1/) come along
    _same(latest.siblings[1], newer.siblings[1])
    _same(LearnedPrior.from_pretrained("acme/lift-prior", cache_dir=cache, revision="v1"), gpt2_prior)
    _same(LearnedPrior.from_pretrained("acme/lift-prior", cache_dir=cache, revision=SHA1), gpt2_prior)
    _same(LearnedPrior.from_pretrained("acme/lift-prior", cache_dir=cache, local_files_only=True), newer)


def test_from_pretrained_subfolder(gpt2_prior, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    gpt2_prior.save_pretrained(repo / "bigbench")
    lay_out_hub_cache(tmp_path / "cache", "acme/priors", repo, SHA1)
    got = LearnedPrior.from_pretrained("acme/priors", subfolder="bigbench", cache_dir=tmp_path / "cache")
    _same(got, gpt2_prior)


def test_from_pretrained_says_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(hub.HubError, match=r"not in cache_dir .* download it once online"):
        LearnedPrior.from_pretrained("acme/absent", cache_dir=tmp_path)
    with pytest.raises(hub.HubError, match="neither a directory nor a Hugging Face Hub repo id"):
        LearnedPrior.from_pretrained(str(tmp_path / "no" / "such" / "dir"))


@pytest.fixture
def fake_hub(monkeypatch):
    return FakeHub().install(monkeypatch)


def test_push_to_hub_builds_one_commit_of_the_prior_files(gpt2_prior, fake_hub, tmp_path):
    prior = make_prior_like(gpt2_prior, seed=4)
    prior.siblings = {3: make_prior_like(gpt2_prior, seed=5)}
    info = prior.push_to_hub("acme/lift-prior", private=True, revision="exp", token="hf_xxx")
    assert info.commit_url.startswith("https://huggingface.co/acme/lift-prior/commit/")
    assert [c[0] for c in fake_hub.calls] == ["create_repo", "create_branch", "create_commit"]
    repo_call, branch_call, commit_call = (c[1] for c in fake_hub.calls)
    assert repo_call["private"] is True and repo_call["exist_ok"] is True and repo_call["token"] == "hf_xxx"
    assert branch_call["branch"] == "exp" and branch_call["exist_ok"] is True
    assert commit_call["revision"] == "exp" and "LiFT prior" in commit_call["commit_message"]
    assert all(isinstance(op, CommitOperationAdd) for op in fake_hub.operations)
    assert sorted(op.path_in_repo for op in fake_hub.operations) == [
        "README.md",
        "k3/prior.json",
        "k3/prior.safetensors",
        "prior.json",
        "prior.safetensors",
    ]
    # what was uploaded is the prior: lay it out as the Hub would serve it and read it back
    repo = tmp_path / "served"
    for path, data in fake_hub.uploaded.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_bytes(data)
    _same(LearnedPrior.from_pretrained(repo), prior)
    assert 'LearnedPrior.from_pretrained("acme/lift-prior")' in fake_hub.uploaded["README.md"].decode()


def test_push_to_hub_refuses_a_bad_repo_id(gpt2_prior, fake_hub):
    with pytest.raises(hub.HubError, match="owner/name"):
        gpt2_prior.push_to_hub("not a/valid//id")
    assert fake_hub.calls == []


def test_cli_info_adapt_and_push_prior_take_hub_ids(gpt2_prior, rule_tasks, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    cache = tmp_path / "cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    local = gpt2_prior.save_pretrained(tmp_path / "prior")
    lay_out_hub_cache(cache, "acme/lift-prior", local, SHA1)

    assert main(["info", "acme/lift-prior", "--json"]) == 0
    details = json.loads(capsys.readouterr().out)
    assert (
        details["kind"] == "prior" and details["k"] == 2 and details["adapter_parameters"] == gpt2_prior.dim
    )

    task = sorted((rule_tasks / "test").iterdir())[0]
    argv = ["adapt", "--prior", "acme/lift-prior", "--task", str(task), "--out", str(tmp_path / "adapter")]
    assert main([*argv, "--steps", "2", "--quiet"]) == 0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    capsys.readouterr()

    fake = FakeHub().install(monkeypatch)
    assert main(["push-prior", str(local), "acme/pushed", "--private"]) == 0
    assert "prior pushed: https://huggingface.co/acme/pushed/commit/" in capsys.readouterr().out
    assert fake.calls[0][1]["private"] is True
    assert sorted(op.path_in_repo for op in fake.operations) == [
        "README.md",
        "prior.json",
        "prior.safetensors",
    ]

    assert main(["info", "acme/absent"]) == 1
    assert "download it once online" in capsys.readouterr().err
