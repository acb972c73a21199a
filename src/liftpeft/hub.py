"""Priors on the Hugging Face Hub: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``.

The Hub artefact is the prior directory ``LearnedPrior.save`` writes (``prior.json`` and
``prior.safetensors``, formats ``liftpeft-prior/1`` and ``/2``; a K sweep's other mixtures in
``k{K}/``) plus a generated model card ``README.md``. Nothing else is invented: a folder downloaded
from the Hub is an ordinary prior directory, and ``liftpeft adapt --prior`` reads either.

Hub access goes through ``huggingface_hub`` as ``peft`` does it: a local directory is used as it
is; anything else is a repo id resolved with ``snapshot_download`` (``revision``, ``token``,
``cache_dir``, ``local_files_only``, ``force_download``; ``HF_HUB_OFFLINE=1`` reads the cache only),
and a push is ``create_repo(exist_ok=True)`` (plus ``create_branch`` for a ``revision``) and one
``create_commit`` of ``CommitOperationAdd`` operations.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from liftpeft.learned_prior import META_FILE, TENSORS_FILE, LearnedPrior
from liftpeft.model_card import CARD_FILE, prior_card
from liftpeft.outputs import claim_output

# what a prior repo holds; only these are downloaded (a K sweep's siblings sit in k{K}/)
PRIOR_PATTERNS = (META_FILE, TENSORS_FILE, CARD_FILE, f"k*/{META_FILE}", f"k*/{TENSORS_FILE}")


class HubError(ValueError):
    """A prior that could not be found or fetched; the message says what to do."""


def is_repo_id(ref: str) -> bool:
    """Whether ``ref`` is a valid Hub repo id (``name`` or ``owner/name``)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(str(ref))
    except HFValidationError:
        return False
    return True


def resolve(
    path_or_repo_id: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    subfolder: str | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    allow_patterns: tuple[str, ...] = PRIOR_PATTERNS,
) -> Path:
    """The local directory of a prior: ``path_or_repo_id`` itself if it is a directory, else the
    snapshot of that Hub repo (downloaded, or read from the cache when offline)."""
    local = Path(path_or_repo_id).expanduser()
    if local.is_dir():
        return local / subfolder if subfolder else local
    ref = str(path_or_repo_id)
    if not is_repo_id(ref):
        raise HubError(
            f"{ref} is neither a directory nor a Hugging Face Hub repo id (owner/name); give the path "
            "of a prior directory or a repo id"
        )
    from huggingface_hub import errors as hub_errors
    from huggingface_hub import snapshot_download

    patterns = [f"{subfolder}/{p}" for p in allow_patterns] if subfolder else list(allow_patterns)
    try:
        folder = snapshot_download(
            ref,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            force_download=force_download,
            allow_patterns=patterns,
            library_name="liftpeft",
        )
    except hub_errors.RepositoryNotFoundError:
        raise HubError(
            f"{ref} is no directory, and there is no Hub repo {ref!r} (if it is private, log in with "
            "`hf auth login` or pass token=)"
        ) from None
    except hub_errors.RevisionNotFoundError:
        raise HubError(
            f"Hub repo {ref!r} has no revision {revision!r}; give a branch, tag or commit"
        ) from None
    except hub_errors.LocalEntryNotFoundError:
        where = f"cache_dir {cache_dir}" if cache_dir else "the Hugging Face cache"
        raise HubError(
            f"{ref} is no directory, and as a Hub repo id (revision {revision or 'main'}) it is not in "
            f"{where} while the Hub cannot be reached (HF_HUB_OFFLINE=1 or no network); download it "
            "once online, or give a local prior directory"
        ) from None
    return Path(folder) / subfolder if subfolder else Path(folder)


def load(folder: str | os.PathLike) -> LearnedPrior:
    """The prior in a local directory, with the other mixtures of its K sweep (``k{K}/``)."""
    folder = Path(folder)
    prior = LearnedPrior.load(folder)
    prior.siblings = {
        int(p.name[1:]): LearnedPrior.load(p)
        for p in sorted(folder.glob("k*"))
        if p.name[1:].isdigit() and (p / META_FILE).is_file()
    }
    return prior


def write(
    prior: LearnedPrior,
    folder: str | os.PathLike,
    *,
    repo_id: str | None = None,
    base_model: str | None = None,
    results: dict[str, Any] | None = None,
) -> Path:
    """Write the prior's files and its model card into ``folder`` (a fresh directory)."""
    folder = Path(folder)
    prior.save(folder)
    for k, sibling in sorted(prior.siblings.items()):
        sibling.save(folder / f"k{k}")
    card = prior_card(prior, repo_id=repo_id, base_model=base_model, results=results)
    from liftpeft.atomic import atomic_write_text

    atomic_write_text(folder / CARD_FILE, card)
    return folder


def save_pretrained(
    prior: LearnedPrior, save_directory: str | os.PathLike, *, overwrite: bool = False, **card: Any
) -> Path:
    """Save as a Hub-ready directory. A non-empty directory that is not a liftpeft prior is refused
    untouched; an existing prior is replaced only with ``overwrite`` (then only its own files)."""
    target = claim_output(save_directory, "prior", overwrite=overwrite, publish=True, flag="save_directory")
    with target, target.build() as tmp:
        write(prior, tmp, **card)
    return target.path


def commit_operations(folder: str | os.PathLike) -> list[Any]:
    """One ``CommitOperationAdd`` per file under ``folder`` (hidden files skipped), sorted."""
    from huggingface_hub import CommitOperationAdd

    folder = Path(folder)
    files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return [
        CommitOperationAdd(path_in_repo=rel.as_posix(), path_or_fileobj=str(folder / rel))
        for rel in files
        if not any(part.startswith(".") for part in rel.parts)
    ]


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    api: Any = None,
) -> Any:
    """Upload every file of ``folder`` (a prior, or an adapter ``liftpeft adapt`` wrote; hidden files
    such as liftpeft's output marker skipped) to model repo ``repo_id`` in one commit; the repo is
    created if missing (``private`` applies then), the branch ``revision`` too. Returns
    ``huggingface_hub``'s ``CommitInfo``."""
    from huggingface_hub import HfApi

    if not is_repo_id(repo_id):
        raise HubError(f"{repo_id!r} is not a valid Hub repo id; use owner/name")
    operations = commit_operations(folder)
    if not operations:
        raise HubError(f"{folder} holds no files to upload")
    api = api if api is not None else HfApi(token=token)
    repo = api.create_repo(repo_id, token=token, private=private, exist_ok=True)
    repo_id = getattr(repo, "repo_id", None) or repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    return api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message,
        token=token,
        revision=revision,
        create_pr=create_pr,
    )


def push_to_hub(
    prior: LearnedPrior,
    repo_id: str,
    *,
    commit_message: str | None = None,
    base_model: str | None = None,
    results: dict[str, Any] | None = None,
    **push: Any,
) -> Any:
    """Upload the prior and its card (``write``) to ``repo_id`` in one commit (``push_folder``)."""
    if not is_repo_id(repo_id):
        raise HubError(f"{repo_id!r} is not a valid Hub repo id; use owner/name")
    message = commit_message or (
        f"Upload LiFT prior (K={prior.n_components}, {prior.dim} adapter parameters) with liftpeft"
    )
    with tempfile.TemporaryDirectory(prefix="liftpeft-push-") as tmp:
        write(prior, tmp, repo_id=repo_id, base_model=base_model, results=results)
        return push_folder(tmp, repo_id, commit_message=message, **push)
