import pytest
import torch

from liftpeft.core import FlatSpec


def test_flatten_unflatten_round_trip_and_views():
    tensors = {"a.lora_A": torch.randn(4, 3), "a.lora_B": torch.randn(3, 4), "head": torch.randn(5)}
    spec = FlatSpec.from_tensors(tensors)
    vec = spec.flatten(tensors)
    assert vec.shape == (spec.dim,) == (29,)
    back = spec.unflatten(vec)
    assert list(back) == list(tensors)
    for name in tensors:
        assert torch.equal(back[name], tensors[name])
    vec[0] = 123.0  # unflatten returns views
    assert back["a.lora_A"][0, 0] == 123.0
    assert FlatSpec.from_dict(spec.to_dict()) == spec
    assert spec.offsets()["head"] == (24, 29)


def test_unflatten_is_differentiable():
    spec = FlatSpec(("w",), ((2, 2),), ("float32",))
    vec = torch.randn(4, requires_grad=True)
    (spec.unflatten(vec)["w"] ** 2).sum().backward()
    assert torch.allclose(vec.grad, 2 * vec.detach())


def test_shape_errors():
    spec = FlatSpec(("w",), ((2, 2),), ("float32",))
    with pytest.raises(ValueError, match="length 4"):
        spec.unflatten(torch.zeros(5))
    with pytest.raises(ValueError, match="shape"):
        spec.flatten({"w": torch.zeros(4)})
    with pytest.raises(KeyError):
        spec.flatten({})
