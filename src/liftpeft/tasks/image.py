"""``ImageTask``: an N-way few-shot image classification task (uint8 images, labels 0..N-1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SPLITS = ("train", "test")


@dataclass(frozen=True)
class ImageTask:
    """``train_images`` / ``test_images``: uint8 ``(n, H, W)`` or ``(n, H, W, 3)``; labels int64 in
    ``0..len(classes)-1``; ``classes[j]`` names label ``j``; ``domain`` is the source data set."""

    name: str
    domain: str
    classes: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def __post_init__(self) -> None:
        for split in IMAGE_SPLITS:
            images, labels = self.split(split)
            if images.dtype != np.uint8 or len(images) != len(labels):
                raise ValueError(f"task {self.name!r}: {split} needs uint8 images and one label per image")
            if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
                raise ValueError(f"task {self.name!r}: {split} labels must lie in 0..{len(self.classes) - 1}")

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split == "train":
            return self.train_images, self.train_labels
        if split == "test":
            return self.test_images, self.test_labels
        if split == "dev":
            return self.train_images[:0], self.train_labels[:0]
        raise ValueError(f"unknown split {split!r}; image tasks have 'train' and 'test'")
