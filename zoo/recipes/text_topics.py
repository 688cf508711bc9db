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


def train_topic_encoder(out_dir: Path, epochs: int = 8, seed: int = 0, lr: float = 3e-3, batch_size: int = 128) -> None:
    """Train a :class:`TextEncoder` with AdamW and a one-cycle schedule; write ``out_dir/model.pt``."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    # Denormal optimizer state can slow a CPU step many times over; flushing it to zero is harmless here.
    torch.set_flush_denormal(True)
    generator = torch.Generator().manual_seed(seed)
    ids, mask, labels = topic_tensors("train", seed)
    model = TextEncoder()
    steps = epochs * -(-len(labels) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(labels), generator=generator).split(batch_size):
            loss = loss_fn(model(ids[batch], mask[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.eval().state_dict(), out_dir / MODEL_FILE)
