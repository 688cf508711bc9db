"""Seeded training recipes: small timm classifiers on the ``mnist`` train split.

Each recipe builds its network with the factory the card names
(``zoocompat_zoo.models.timm_small``), trains it from scratch on CPU (2 threads,
deterministic algorithms) and writes exactly one file, ``model.pt``, a state
dict. Training uses the ``train`` split only, so the card's ``test`` samples
stay unseen. The input scaling matches the cards' ``preprocess``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from zoocompat_zoo.models import timm_small
from zoocompat_zoo.recipes.pinned import pinned
from zoocompat_zoo.recipes.training import fit, seeded

from zoocompat.api.registry import registry

MODEL_FILE = "model.pt"
#: The cards' preprocess: ``(x * SCALE - MEAN) / STD`` on 0..255 pixels.
SCALE, MEAN, STD = 1 / 255, 0.1307, 0.3081
THREADS = 2


def mnist_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``mnist`` ``split`` as normalised ``N x 1 x 28 x 28`` float32 images and int64 labels."""
    pool = registry().get("dataset", "mnist").load(split, 0, {})
    images = (pool.samples.astype(np.float32) * np.float32(SCALE) - np.float32(MEAN)) / np.float32(STD)
    return torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), torch.from_numpy(pool.labels)


def _shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Move each image by a random offset of up to ``max_shift`` pixels, filling with the background value."""
    size = images.shape[-1]
    background = (0.0 - MEAN) / STD
    padded = nn.functional.pad(images, (max_shift,) * 4, value=background)
    offsets = torch.randint(0, 2 * max_shift + 1, (len(images), 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy : dy + size, dx : dx + size] for i, (dy, dx) in enumerate(offsets)])


def _train(
    factory: Callable[[], nn.Module],
    out_dir: Path,
    *,
    epochs: int,
    seed: int,
    lr: float,
    batch_size: int = 64,
    weight_decay: float = 0.01,
    beta2: float = 0.999,
    max_shift: int = 2,
) -> None:
    """Train ``factory()`` with AdamW and a one-cycle schedule on randomly shifted
    training images (up to ``max_shift`` pixels); save its state dict.
    """
    generator = seeded(seed, THREADS)
    images, labels = mnist_tensors("train")
    model = factory()
    loss_fn = nn.CrossEntropyLoss()
    fit(
        model,
        model.parameters(),
        len(labels),
        lambda batch: loss_fn(model(_shift(images[batch], max_shift, generator)), labels[batch]),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        betas=(0.9, beta2),
        generator=generator,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.eval().state_dict(), out_dir / MODEL_FILE)


@pinned(THREADS)
def train_resnet(out_dir: Path, epochs: int = 6, seed: int = 0) -> None:
    """Train :func:`zoocompat_zoo.models.timm_small.resnet` and write ``out_dir/model.pt``."""
    _train(timm_small.resnet, out_dir, epochs=epochs, seed=seed, lr=3e-3)


@pinned(THREADS)
def train_mobilenetv3(out_dir: Path, epochs: int = 16, seed: int = 0) -> None:
    """Train :func:`zoocompat_zoo.models.timm_small.mobilenetv3` and write ``out_dir/model.pt``."""
    _train(
        timm_small.mobilenetv3, out_dir, epochs=epochs, seed=seed, lr=5e-3, weight_decay=0.0, beta2=0.99, max_shift=1
    )


@pinned(THREADS)
def train_efficientnet(out_dir: Path, epochs: int = 9, seed: int = 0) -> None:
    """Train :func:`zoocompat_zoo.models.timm_small.efficientnet` and write ``out_dir/model.pt``."""
    _train(
        timm_small.efficientnet, out_dir, epochs=epochs, seed=seed, lr=5e-3, weight_decay=0.0, beta2=0.99, max_shift=1
    )


@pinned(THREADS)
def train_vit(out_dir: Path, epochs: int = 30, seed: int = 0) -> None:
    """Train :func:`zoocompat_zoo.models.timm_small.vit` and write ``out_dir/model.pt``."""
    _train(timm_small.vit, out_dir, epochs=epochs, seed=seed, lr=2e-3, batch_size=32)
