"""The backbone on an accelerator gives the CPU's losses, gradients and metrics (skipped without CUDA).

``theta`` stays a CPU tensor owned by the samplers; the backbone moves it to its device and gradients
flow back. Tolerance: 1e-4 relative (float32 kernels differ in summation order between devices).
"""

import pytest
import torch

from liftpeft.objective import loss_and_grad
from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective
from liftpeft.tasks import ChoiceExample, PairExample, Task, TextExample

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CHOICES = [ChoiceExample(f"item {w}", ("red", "green", "blue"), i % 3) for i, w in enumerate("abcdefgh")]
PAIRS = [PairExample(f"copy {w}", w * 3) for w in "abcdefgh"]
TEXTS = [TextExample(f"the cat {w} sat on the mat") for w in "abcdefgh"]
EXAMPLES = {"choice": CHOICES, "text2text": PAIRS, "lm": TEXTS}

COMBOS = [
    ("bert", "cross", "choice", False),
    ("bert", "similarity", "choice", False),
    ("bert", "similarity", "choice", True),
    ("gpt2", "cross", "choice", False),
    ("gpt2", "cross", "lm", True),
    ("t5", "cross", "text2text", False),
]


def _objective(path, head, task_kind, cache, device):
    backbone = PeftBackbone(path, choice_head=head, prefix_cache=cache, device=device, seed=0)
    ex = EXAMPLES[task_kind]
    return backbone, PeftTaskObjective(backbone, Task("t", task_kind, ex, ex[:3], ex))


@pytest.mark.parametrize(("kind", "head", "task_kind", "cache"), COMBOS)
def test_cuda_matches_cpu(tiny_models, kind, head, task_kind, cache):
    cpu_bb, cpu = _objective(tiny_models[kind], head, task_kind, cache, "cpu")
    gpu_bb, gpu = _objective(tiny_models[kind], head, task_kind, cache, "cuda")
    assert gpu_bb.theta0.device.type == "cpu"
    torch.testing.assert_close(gpu_bb.theta0, cpu_bb.theta0)
    theta = cpu_bb.theta0 + 0.05 * torch.randn(cpu_bb.dim, generator=torch.Generator().manual_seed(0))
    idx = torch.arange(4)
    loss_c, grad_c = loss_and_grad(cpu, theta, idx)
    loss_g, grad_g = loss_and_grad(gpu, theta, idx)
    assert grad_g.device.type == "cpu"
    assert loss_g == pytest.approx(loss_c, rel=1e-4)
    torch.testing.assert_close(grad_g, grad_c, rtol=1e-4, atol=1e-5)
    m_c, m_g = (
        cpu.evaluate(torch.stack([theta, cpu_bb.theta0])),
        gpu.evaluate(torch.stack([theta, cpu_bb.theta0])),
    )
    assert m_c[cpu.primary_metric] == pytest.approx(m_g[gpu.primary_metric], abs=1e-6)
    assert m_c["loss"] == pytest.approx(m_g["loss"], rel=1e-4)
