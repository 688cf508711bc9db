"""Seeded training recipe: a tiny U-Net segmenting the ``shape_masks`` train split.

:func:`train_shapes_unet` trains :func:`zoocompat_zoo.models.tiny_unet.tiny_unet`
from scratch on CPU (2 threads, deterministic algorithms) with per-pixel
cross-entropy on the ``train`` split only, so the card's ``test`` scenes stay
unseen, and writes exactly one file: ``model.torchscript``, the trained
network in eval mode, its BatchNorms folded into the convolutions, traced with
:func:`torch.jit.trace` on a ``1 x 3 x 64 x 64`` input. The pytorch frontend
loads it with :func:`torch.jit.load`; the card needs no ``architecture``. The
input scaling matches the card's ``preprocess``.

Deep supervision: a 1x1 convolution on the U-Net's deepest (8x8) features is
trained to predict the class at the centre of each 8x8-pixel cell, with half the
weight of the main loss. It exists only during training (it is not part of
the traced model); without it the network stayed on a plateau (shapes found,
their classes not told apart) for most of the step budget, and which seed
escaped it in time was chance.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from zoocompat_zoo.models.tiny_unet import IMAGE_SIZE, IN_CHANNELS, NUM_CLASSES, WIDTHS, TinyUNet
from zoocompat_zoo.recipes.pinned import pinned
from zoocompat_zoo.recipes.training import fit, seeded

from zoocompat.api.registry import registry

MODEL_FILE = "model.torchscript"
#: The card's preprocess: ``(x * SCALE - MEAN) / STD`` on 0..255 pixels, every channel alike.
SCALE, MEAN, STD = 1 / 255, 0.5, 0.25
THREADS = 2
#: Training scenes drawn from the ``shape_masks`` train split.
TRAIN_COUNT = 2500
#: Weight of the deep-supervision loss on the bottleneck, relative to the per-pixel loss.
AUX_WEIGHT = 0.5


def shape_mask_tensors(split: str, seed: int = 0, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``shape_masks`` ``split`` (``count`` scenes, else the split's default) as normalised
    ``N x 3 x 64 x 64`` float32 images and ``N x 64 x 64`` int64 class maps.
    """
    params = {} if count is None else {"count": count}
    pool = registry().get("dataset", "shape_masks").load(split, seed, params)
    images = (pool.samples.astype(np.float32) * np.float32(SCALE) - np.float32(MEAN)) / np.float32(STD)
    labels = pool.labels.astype(np.int64)
    return torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), torch.from_numpy(labels)


def _flip(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror a random half of the batch left-right (a mirrored shape keeps its class)."""
    flip = torch.rand(len(labels), generator=generator) < 0.5
    images, labels = images.clone(), labels.clone()
    images[flip] = images[flip].flip(-1)
    labels[flip] = labels[flip].flip(-1)
    return images, labels


@pinned(THREADS)
def train_shapes_unet(out_dir: Path, epochs: int = 4, seed: int = 0, lr: float = 0.01, batch_size: int = 16) -> None:
    """Train the tiny U-Net with AdamW, a one-cycle schedule and left-right flips on :data:`TRAIN_COUNT`
    scenes of the ``shape_masks`` train split (drawn with ``seed``), then write ``out_dir/model.torchscript``.
    """
    generator = seeded(seed, THREADS)
    images, labels = shape_mask_tensors("train", seed, TRAIN_COUNT)
    model = TinyUNet(WIDTHS).to(memory_format=torch.channels_last)
    aux_head = nn.Conv2d(WIDTHS[-1], NUM_CLASSES, 1)
    loss_fn = nn.CrossEntropyLoss()

    def loss(batch: torch.Tensor) -> torch.Tensor:
        x, y = _flip(images[batch], labels[batch], generator)
        logits, bottleneck = model.forward_with_bottleneck(x.contiguous(memory_format=torch.channels_last))
        cell = y.shape[-1] // bottleneck.shape[-1]
        centres = y[:, cell // 2 :: cell, cell // 2 :: cell]
        return loss_fn(logits, y) + AUX_WEIGHT * loss_fn(aux_head(bottleneck), centres)

    fit(
        model,
        [*model.parameters(), *aux_head.parameters()],
        len(labels),
        loss,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=1e-4,
        generator=generator,
    )
    exported = model.to(memory_format=torch.contiguous_format).fused()
    example = torch.zeros(1, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit.trace is deprecated in favour of torch.export, but a TorchScript archive is what this card tests
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(exported, example)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    traced.save(str(out_dir / MODEL_FILE))
