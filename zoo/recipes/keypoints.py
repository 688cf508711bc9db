"""Seeded training recipe: :class:`zoocompat_zoo.models.keypoint_net.KeypointNet` on ``shape_keypoints``.

The network is trained from scratch on CPU (2 threads, deterministic
algorithms) on the dataset's ``train`` split only, so the card's ``test``
samples stay unseen, and written as one file, ``model.safetensors`` (a state
dict). The input scaling matches the card's ``preprocess``; the targets are the
corner pixels divided by the image side (the card's ``metric.params.scale``
multiplies them back).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from zoocompat_zoo.models.keypoint_net import KeypointNet
from zoocompat_zoo.recipes.pinned import pinned
from zoocompat_zoo.recipes.training import fit, seeded

from zoocompat.api.registry import registry

MODEL_FILE = "model.safetensors"
#: The card's preprocess: ``(x * SCALE - MEAN) / STD`` on 0..255 pixels.
SCALE, MEAN, STD = 1 / 255, 0.5, 0.25
#: Image side: the targets are corner pixels / SIDE.
SIDE = 64
THREADS = 2


def keypoint_tensors(split: str, seed: int, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``shape_keypoints`` ``split`` as normalised ``N x 1 x 64 x 64`` images and ``N x 8`` targets."""
    params = {} if count is None else {"count": count}
    pool = registry().get("dataset", "shape_keypoints").load(split, seed, params)
    images = (pool.samples.astype(np.float32) * np.float32(SCALE) - np.float32(MEAN)) / np.float32(STD)
    targets = pool.labels.reshape(len(pool.labels), -1) / np.float32(SIDE)
    return torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), torch.from_numpy(targets.astype(np.float32))


def _flip(images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror a random half of the batch left-right; a mirrored quadrilateral's corners go back to canonical order.

    Mirroring keeps the top-most corner and turns clockwise into counter-clockwise: the order
    ``(0, 1, 2, 3)`` becomes ``(0, 3, 2, 1)``.
    """
    flip = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    mirrored = targets.view(-1, 4, 2)[:, [0, 3, 2, 1]].clone()
    mirrored[..., 0] = 1 - mirrored[..., 0]
    targets = torch.where(flip[:, None], mirrored.view(-1, 8), targets)
    return images, targets


@pinned(THREADS)
def train_shape_keypoints(
    out_dir: Path, epochs: int = 8, seed: int = 0, count: int = 4000, lr: float = 6e-3, batch_size: int = 64
) -> None:
    """Train :class:`KeypointNet` on the ``shape_keypoints`` train split and write ``out_dir/model.safetensors``.

    AdamW with a one-cycle schedule, smooth-L1 loss on the corners (fractions of the image side), random
    left-right mirroring (corners reordered to stay canonical).
    """
    from safetensors.torch import save_file

    generator = seeded(seed, THREADS)
    images, targets = keypoint_tensors("train", seed, count)
    model = KeypointNet()
    loss_fn = nn.SmoothL1Loss(beta=0.02)

    def loss(batch: torch.Tensor) -> torch.Tensor:
        inputs, wanted = _flip(images[batch], targets[batch], generator)
        return loss_fn(model(inputs), wanted)

    fit(
        model,
        model.parameters(),
        len(targets),
        loss,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=1e-4,
        generator=generator,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous() for name, tensor in model.eval().state_dict().items()}
    save_file(state, str(out_dir / MODEL_FILE))
