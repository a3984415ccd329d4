"""Interventions: randomisations of the shown ranking that make position bias identifiable.

Each intervention is a class with a pure JAX ``permute(key, n_shown, list_size, k)``
returning the permutation of the ``list_size`` display slots and the session's
intervention code (0 = no effect), applied to a share ``intervention_rate`` of
the sessions by the simulator. The code is stored in the log's ``intervention``
column and read by the propensity estimators.
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp

from click_models.registry import Registry


class Intervention(abc.ABC):
    """A randomisation of the shown ranking (see the module docstring)."""

    name: str = ""
    #: what the ``intervention`` column holds, for the log's metadata
    codes: str = ""
    #: whether ``intervention_k`` means something to it
    uses_k: bool = False

    @staticmethod
    @abc.abstractmethod
    def permute(key, n_shown, list_size: int, k: int):
        """``(permutation [list_size] int, code int32)`` for a session that shows ``n_shown`` documents."""


INTERVENTIONS: Registry[type[Intervention]] = Registry("intervention")


@INTERVENTIONS.register()
class RandTopK(Intervention):
    """Shuffle the top intervention_k shown documents uniformly (Joachims et al., WSDM 2017)."""

    name = "randtopk"
    codes = "1 = the top {k} shown documents were shuffled uniformly, 0 = not"
    uses_k = True

    @staticmethod
    def permute(key, n_shown, list_size, k):
        positions = jnp.arange(list_size)
        limit = jnp.minimum(n_shown, k)
        keys = jnp.where(positions < limit, jax.random.uniform(key, (list_size,)), positions + 2.0)
        return jnp.argsort(keys), jnp.where(limit > 1, 1, 0)


@INTERVENTIONS.register()
class Swap(Intervention):
    """Swap rank 1 with a rank k drawn uniformly from 2..n_shown (Joachims et al. 2017; Wang et al., WSDM 2018)."""

    name = "swap"
    codes = "k >= 2 = the documents at ranks 1 and k were swapped, 0 = not"

    @staticmethod
    def permute(key, n_shown, list_size, k):
        positions = jnp.arange(list_size)
        other = jax.random.randint(key, (), 1, jnp.maximum(n_shown, 2))
        can_swap = n_shown > 1
        swapped = jnp.where(positions == 0, other, jnp.where(positions == other, 0, positions))
        return jnp.where(can_swap, swapped, positions), jnp.where(can_swap, other + 1, 0)
