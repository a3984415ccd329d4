"""Relevance labels to click-model document parameters.

Graded labels ``y`` in ``0..y_max`` become probabilities as in the semi-synthetic
setups of Ai et al. (SIGIR 2018) and Chapelle and Zhang (WWW 2009):

>>> import jax.numpy as jnp
>>> [round(float(a), 4) for a in attraction_from_labels(jnp.array([0, 1, 2]), 2, eps_pos=1.0, eps_neg=0.1)]
[0.1, 0.4, 1.0]
>>> satisfaction_from_labels(jnp.array([0, 2]), max_label=2).tolist()
[0.0, 0.75]
"""

from __future__ import annotations

import jax.numpy as jnp


def attraction_from_labels(labels, max_label: int, eps_pos: float, eps_neg: float):
    """``eps_neg + (eps_pos - eps_neg) * (2^y - 1) / (2^y_max - 1)``, shape of ``labels``."""
    gain = (jnp.exp2(jnp.asarray(labels).astype(jnp.float32)) - 1.0) / (2.0**max_label - 1.0)
    return eps_neg + (eps_pos - eps_neg) * gain


def satisfaction_from_labels(labels, max_label: int):
    """DBN satisfaction ``(2^y - 1) / 2^y_max`` (Chapelle and Zhang, WWW 2009), shape of ``labels``."""
    return (jnp.exp2(jnp.asarray(labels).astype(jnp.float32)) - 1.0) / 2.0**max_label
