"""The README's "with your own data and the Hub" lines are the docs pages' own, which their tests run
(tests/test_paper_docs.py for docs/datasets.md, tests/hub/test_hub_docs.py for docs/hub.md)."""

import re
import shlex
from pathlib import Path

from tests.hub.test_hub_docs import blocks as hub_blocks
from tests.test_paper_docs import _blocks as dataset_blocks

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- ecosystem:"


def _readme_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    assert text.count(MARKER) == 1
    block = re.search(r"```bash\n(.*?)\n```", text[text.index(MARKER) :], re.S)
    assert block is not None
    return [ln for ln in block.group(1).splitlines() if ln.strip()]


def _run_lines() -> set[tuple[str, ...]]:
    run = set()
    for page_blocks in (dataset_blocks("datasets.md"), hub_blocks("hub.md")):
        for kind, code in page_blocks:
            if kind == "bash":
                run.update(tuple(shlex.split(ln, comments=True)) for ln in code.splitlines() if ln.strip())
    return run


def test_every_readme_ecosystem_line_is_run_by_a_docs_test():
    lines = _readme_lines()
    assert len(lines) >= 4
    run = _run_lines()
    for line in lines:
        assert tuple(shlex.split(line)) in run, f"README line not run by a docs test: {line}"
