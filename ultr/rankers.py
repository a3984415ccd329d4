"""Rankers: ``flax.nnx`` modules that score query-document feature vectors.

Input ``[..., list_size, num_features]``, output scores ``[..., list_size]``.
"""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx


class LinearRanker(nnx.Module):
    """``score = w . x + b``."""

    def __init__(self, num_features: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(num_features, 1, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

    def __call__(self, features: jax.Array) -> jax.Array:
        return self.linear(features)[..., 0]


class MLPRanker(nnx.Module):
    """Multi-layer perceptron with ELU activations and optional dropout."""

    def __init__(self, num_features: int, hidden: Sequence[int] = (512, 256, 128), dropout: float = 0.0, *,
                 rngs: nnx.Rngs):
        sizes = [num_features, *hidden]
        self.layers = nnx.List([nnx.Linear(i, o, rngs=rngs) for i, o in zip(sizes[:-1], sizes[1:])])
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None
        self.out = nnx.Linear(sizes[-1], 1, rngs=rngs)

    def __call__(self, features: jax.Array) -> jax.Array:
        x = features
        for layer in self.layers:
            x = jax.nn.elu(layer(x))
            if self.dropout is not None:
                x = self.dropout(x)
        return self.out(x)[..., 0]


def make_ranker(kind: str, num_features: int, hidden: Sequence[int] = (512, 256, 128), dropout: float = 0.0,
                seed: int = 0) -> nnx.Module:
    """``kind``: ``linear`` or ``mlp``."""
    rngs = nnx.Rngs(seed)
    if kind == "linear":
        return LinearRanker(num_features, rngs=rngs)
    if kind == "mlp":
        return MLPRanker(num_features, hidden, dropout, rngs=rngs)
    raise ValueError(f"unknown ranker {kind!r}; choose linear or mlp")

