"""Optimisers of the rankers (optax), by name.

Each entry builds an ``optax.GradientTransformation`` from the learning rate and
the weight decay (which only AdamW uses).
"""

from __future__ import annotations

from typing import Callable

import optax

from click_models.registry import Registry

OPTIMIZERS: Registry[Callable[..., optax.GradientTransformation]] = Registry("optimizer")


def _register(name: str, uses_weight_decay: bool = False):
    def decorate(fn):
        fn.uses_weight_decay = uses_weight_decay
        return OPTIMIZERS.register(name)(fn)

    return decorate


@_register("adamw", uses_weight_decay=True)
def adamw(learning_rate: float, weight_decay: float = 1e-4) -> optax.GradientTransformation:
    """Adam with decoupled weight decay (Loshchilov and Hutter, ICLR 2019)."""
    return optax.adamw(learning_rate, weight_decay=weight_decay)


@_register("adam")
def adam(learning_rate: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """Adam (Kingma and Ba, ICLR 2015)."""
    return optax.adam(learning_rate)


@_register("adagrad")
def adagrad(learning_rate: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """Adagrad (Duchi et al., JMLR 2011), the optimiser of ULTRA's DLA setting."""
    return optax.adagrad(learning_rate)


@_register("sgd")
def sgd(learning_rate: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """Plain stochastic gradient descent."""
    return optax.sgd(learning_rate)
