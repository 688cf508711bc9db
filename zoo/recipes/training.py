"""The training loop the torch recipes share: seeded and deterministic on CPU, AdamW with a one-cycle schedule.

Each recipe brings its data, its network and its loss on one batch; :func:`seeded` fixes every source of
randomness first and :func:`fit` runs the epochs of seeded random batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


def seeded(seed: int, threads: int) -> torch.Generator:
    """Make training deterministic on ``threads`` CPU threads and return the generator of the batch order (and
    of any augmentation the recipe draws).
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    # Denormal optimizer state can slow a CPU step many times over; flushing it to zero is harmless here.
    torch.set_flush_denormal(True)
    return torch.Generator().manual_seed(seed)


def fit(
    model: nn.Module,
    parameters: Iterable[torch.nn.Parameter],
    count: int,
    loss: Callable[[torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    generator: torch.Generator,
    betas: tuple[float, float] = (0.9, 0.999),
) -> None:
    """Train ``parameters`` with AdamW and a one-cycle schedule for ``epochs`` over ``count`` samples in random
    batches drawn with ``generator``; ``loss(batch indices)`` computes one batch's loss.
    """
    steps = epochs * -(-count // batch_size)
    optimizer = torch.optim.AdamW(parameters, lr=lr, betas=betas, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(count, generator=generator).split(batch_size):
            value = loss(batch)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            schedule.step()
