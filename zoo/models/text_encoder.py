"""A tiny transformer text encoder for the ``topic_sentences`` dataset: token ids and a mask in, 4 logits out.

Token and learned position embeddings (width 64), two pre-norm encoder layers
of 2-head self-attention and a ReLU MLP, a final LayerNorm, a mean over the
unmasked tokens and a linear head. Attention is written out with plain
MatMul / Softmax / LayerNorm (no ``nn.MultiheadAttention`` and its fused
path), and padding is masked with an additive bias ``(1 - mask) * -1e4``, as
BERT-style encoders do, so the exported ONNX holds only Gather, MatMul, Add,
Mul, Sub, Div, Softmax, LayerNormalization, Relu, Reshape, Transpose and
ReduceSum. The recipe (``zoocompat_zoo.recipes.text_topics``) and the card's
``architecture`` build the same class, so the saved state dict always fits.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Embedding rows: at least the ``topic_sentences`` vocabulary (180 ids), rounded up.
VOCAB_SIZE = 200
SEQ_LEN = 32
DIM = 64
HEADS = 2
LAYERS = 2
MLP_DIM = 128
NUM_CLASSES = 4
#: The additive attention bias of a padding token (BERT's value: exp(-1e4) is 0 in float32 and float16).
MASK_BIAS = -1e4


class SelfAttention(nn.Module):
    """Multi-head self-attention from plain linear layers, MatMul and Softmax."""

    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> ``[B, heads, T, head_dim]``."""
        batch, tokens, _ = x.shape
        return x.reshape(batch, tokens, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Attend over ``x`` ``[B, T, D]``; ``bias`` ``[B, 1, 1, T]`` is added to every score row."""
        batch, tokens, dim = x.shape
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim)) + bias
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.out(context.transpose(1, 2).reshape(batch, tokens, dim))


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int = DIM, heads: int = HEADS, mlp_dim: int = MLP_DIM) -> None:
        super().__init__()
        self.norm1, self.attention = nn.LayerNorm(dim), SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """One layer over ``x`` ``[B, T, D]`` with the attention ``bias``."""
        x = x + self.attention(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """Token ids ``[B, 32]`` and attention mask ``[B, 32]`` (both int64) -> topic logits ``[B, 4]``."""

    def __init__(
        self, vocab_size: int = VOCAB_SIZE, seq_len: int = SEQ_LEN, dim: int = DIM, num_classes: int = NUM_CLASSES
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        self.positions = nn.Parameter(torch.zeros(1, seq_len, dim))
        nn.init.normal_(self.positions, std=0.02)
        self.layers = nn.ModuleList(EncoderLayer(dim) for _ in range(LAYERS))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Topic logits of a batch of padded token rows; tokens where ``attention_mask`` is 0 are ignored."""
        mask = attention_mask.to(torch.float32)
        bias = ((1.0 - mask) * MASK_BIAS)[:, None, None, :]
        x = self.tokens(input_ids) + self.positions
        for layer in self.layers:
            x = layer(x, bias)
        x = self.norm(x)
        # mean over the real tokens; an all-padding row (the exporter's zero example) divides by 1, not 0
        total = (x * mask[:, :, None]).sum(dim=1)
        return self.head(total / mask.sum(dim=1, keepdim=True).clamp(min=1.0))
