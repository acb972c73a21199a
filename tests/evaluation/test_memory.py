"""Peak-memory measurement: a call that holds a 256 MiB tensor for a moment shows it."""

import pytest
import torch

from liftpeft.evaluation import memory
from liftpeft.evaluation.memory import measure_peak_memory

MIB = 2**20


def hold(n_bytes: int) -> float:
    block = torch.ones(n_bytes // 4)  # float32, touched by the fill
    total = float(block[::4096].sum())
    del block
    return total


def test_cpu_peak_sees_a_temporary_tensor():
    result, peak = measure_peak_memory(hold, 256 * MIB, device="cpu")
    assert result == pytest.approx(256 * MIB / 4 / 4096)
    assert peak.source in ("rss", "ru_maxrss")
    assert peak.increment_bytes >= 200 * MIB, peak
    assert peak.to_dict()["increment_mib"] >= 200


def test_falls_back_to_ru_maxrss_when_the_high_water_mark_cannot_be_reset(monkeypatch):
    monkeypatch.setattr(memory, "_reset_rss_high_water", lambda: False)
    _, peak = measure_peak_memory(hold, 8 * MIB, device="cpu")
    assert peak.source == "ru_maxrss" and peak.peak_bytes > 0


def test_python_heap_is_traced_on_request():
    _, peak = measure_peak_memory(lambda: [0] * 1_000_000, device="cpu", trace_python=True)
    assert peak.python_peak_bytes is not None and peak.python_peak_bytes >= 7 * MIB


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_peak_counts_allocated_tensors():
    _, peak = measure_peak_memory(
        lambda: torch.ones(64 * MIB // 4, device="cuda").sum().item(), device="cuda"
    )
    assert peak.source == "cuda" and peak.increment_bytes >= 64 * MIB
