"""Seeded training recipe: the tiny transformer text encoder on the ``topic_sentences`` train split.

The recipe builds :class:`zoocompat_zoo.models.text_encoder.TextEncoder` (the
card's ``architecture``), trains it from scratch on CPU (one thread,
deterministic algorithms) and writes exactly one file, ``model.pt``, a state
dict. Only the ``train`` split is used; its sentences never occur in the
``test`` split the card evaluates on.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from zoocompat_zoo.models.text_encoder import TextEncoder
from zoocompat_zoo.recipes.pinned import pinned
from zoocompat_zoo.recipes.training import fit, seeded

from zoocompat.api.registry import registry

MODEL_FILE = "model.pt"
#: One thread: the network's matrices are too small for a second one to help, and on a busy 2-core machine
#: two threads wait on each other (measured under load 7: 170 s with 2 threads, 18 s with 1).
THREADS = 1
DATASET = "topic_sentences"


def topic_tensors(split: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``topic_sentences`` ``split`` (default size) as int64 ``input_ids``, ``attention_mask`` and labels."""
    pool = registry().get("dataset", DATASET).load(split, seed, {})
    return (
        torch.from_numpy(pool.samples["input_ids"]),
        torch.from_numpy(pool.samples["attention_mask"]),
        torch.from_numpy(pool.labels),
    )


@pinned(THREADS)
def train_topic_encoder(out_dir: Path, epochs: int = 8, seed: int = 0, lr: float = 3e-3, batch_size: int = 128) -> None:
    """Train a :class:`TextEncoder` with AdamW and a one-cycle schedule; write ``out_dir/model.pt``."""
    generator = seeded(seed, THREADS)
    ids, mask, labels = topic_tensors("train", seed)
    model = TextEncoder()
    loss_fn = nn.CrossEntropyLoss()
    fit(
        model,
        model.parameters(),
        len(labels),
        lambda batch: loss_fn(model(ids[batch], mask[batch]), labels[batch]),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=0.01,
        generator=generator,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.eval().state_dict(), out_dir / MODEL_FILE)
