import json
import struct

import pytest

from liftpeft.evaluation.html import find_chromium, screenshot
from liftpeft.evaluation.report import write_report
from liftpeft.evaluation.stats import summarize


def fake_results(folder, scores):
    """A results directory with rows for methods -> [per-seed list of per-task scores]."""
    rows = []
    for method, per_seed in scores.items():
        for seed, tasks in enumerate(per_seed):
            for t, value in enumerate(tasks):
                rows.append(
                    {
                        "method": method,
                        "base_method": method,
                        "seed": seed,
                        "task": f"t{t}",
                        "split": "test",
                        "metrics": {"accuracy": value, "chance_accuracy": 0.25},
                        "primary_metric": "accuracy",
                        "higher_is_better": True,
                        "config": {},
                        "meta_train_seconds": 1.0,
                        "adapt_seconds": 0.5,
                    }
                )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "run.json").write_text(json.dumps({"benchmark": "fake", "reference": "lift", "split": "test"}))
    return rows


def test_statistics_match_hand_computation(tmp_path):
    rows = fake_results(
        tmp_path, {"lift": [[0.6, 0.8, 0.7], [0.7, 0.9, 0.8]], "base": [[0.5, 0.8, 0.6], [0.5, 0.7, 0.6]]}
    )
    lift, base = summarize(rows)
    assert (
        lift.method == "lift"
        and lift.mean == pytest.approx(0.75)
        and lift.std == pytest.approx(0.0707107, rel=1e-5)
    )
    assert base.mean == pytest.approx((0.6333333 + 0.6) / 2)
    # per-task means: lift (0.65, 0.85, 0.75), base (0.5, 0.75, 0.6): MAD = (0.15 + 0.1 + 0.15) / 3
    assert base.mad == pytest.approx(0.4 / 3) and base.wins == 3 and base.losses == 0
    from scipy.stats import ttest_rel

    assert base.p_tasks == pytest.approx(ttest_rel([0.65, 0.85, 0.75], [0.5, 0.75, 0.6]).pvalue)


def test_markdown_and_self_contained_html(tmp_path):
    fake_results(tmp_path, {"lift": [[0.6, 0.8], [0.7, 0.9]], "base": [[0.5, 0.8], [0.5, 0.7]]})
    md = write_report(tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "| **lift** |" in md.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html and "data:image/png;base64," in html
    assert 'src="methods.png"' not in html  # images are inlined


@pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed")
def test_html_report_renders_in_headless_chromium(tmp_path):
    fake_results(tmp_path, {"lift": [[0.6, 0.8], [0.7, 0.9]], "base": [[0.5, 0.8], [0.5, 0.7]]})
    write_report(tmp_path)
    png = screenshot(tmp_path / "report.html", tmp_path / "shot.png", width=900, height=1200)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (900, 1200) and len(data) > 20_000  # a blank page compresses to far less
