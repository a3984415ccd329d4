"""Rankers: ``flax.nnx`` modules that score query-document feature vectors.

Input ``[..., list_size, num_features]``, output scores ``[..., list_size]``.
"""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from click_models.registry import Registry

RANKERS: Registry[type[nnx.Module]] = Registry("ranker")


@RANKERS.register("linear")
class LinearRanker(nnx.Module):
    """Linear scores ``w . x + b`` (weights start at zero)."""

    #: options of TrainConfig it uses
    options: tuple[str, ...] = ()

    def __init__(self, num_features: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(num_features, 1, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

    def __call__(self, features: jax.Array) -> jax.Array:
        return self.linear(features)[..., 0]


@RANKERS.register("mlp")
class MLPRanker(nnx.Module):
    """Multi-layer perceptron with ELU activations and optional dropout."""

    options: tuple[str, ...] = ("hidden", "dropout")

    def __init__(self, num_features: int, hidden: Sequence[int] = (64, 32), dropout: float = 0.0, *,
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


def make_ranker(kind, num_features: int, hidden: Sequence[int] = (64, 32), dropout: float = 0.0,
                seed: int = 0) -> nnx.Module:
    """A ranker of :data:`RANKERS` (class or name) for ``num_features`` features."""
    cls = RANKERS.resolve(kind) if not isinstance(kind, str) else RANKERS.lookup(kind, "ranker")
    options = {"hidden": tuple(hidden), "dropout": dropout}
    return cls(num_features, **{k: options[k] for k in cls.options}, rngs=nnx.Rngs(seed))
