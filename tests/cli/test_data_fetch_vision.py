"""`liftpeft data fetch vision` calls the vision loaders and says what it cached (no downloads)."""

from __future__ import annotations

import numpy as np

from liftpeft.cli.main import main
from liftpeft.data import vision
from liftpeft.data.vision import ImageSet


def test_data_fetch_vision(monkeypatch, capsys, tmp_path):
    fake = ImageSet("digits", np.zeros((3, 8, 8), np.uint8), np.array([0, 1, 1]), ("0", "1"))
    monkeypatch.setattr(vision, "fetch_vision", lambda: iter([fake]))
    monkeypatch.setattr(vision, "lite0_weights", lambda: tmp_path / "w.safetensors")
    assert main(["data", "fetch", "vision"]) == 0
    out = capsys.readouterr().out
    assert "digits cached (3 images of 2 classes)" in out and "w.safetensors" in out
