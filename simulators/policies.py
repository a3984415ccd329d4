"""Logging policies: how the logged system ranked each query.

A policy gives every document of a query a score; deterministic policies show
the top-K by score, stochastic ones sample a ranking per session from a
Plackett-Luce distribution over ``score / temperature`` (Gumbel top-K trick).

* ``production``: a linear ranker trained on a small fraction (default 1%) of
  the training queries with their relevance labels, as in Joachims et al.
  (WSDM 2017) and Ai et al. (SIGIR 2018);
* ``uniform``: every ranking equally likely;
* ``plackett-luce``: stochastic rankings over the production ranker's scores;
* ``noisy-oracle``: labels plus fixed Gaussian noise per document.
"""

from __future__ import annotations

import abc
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import rax

from click_models.registry import Registry

from .datasets import PaddedRanking, RankingData



@dataclasses.dataclass
class Policy:
    """Scores ``[Q, L]`` (``-inf`` on padding) and a temperature (0 = deterministic)."""

    name: str
    scores: np.ndarray
    temperature: float = 0.0
    linear: dict | None = None  # {"weights", "mean", "scale"} of a linear ranker

    def description(self) -> dict:
        out = {"name": self.name, "temperature": self.temperature, "weights": None}
        if self.linear is not None:
            out.update({k: np.asarray(v).tolist() for k, v in self.linear.items()})
        return out

    @property
    def stochastic(self) -> bool:
        return self.temperature > 0


def train_linear_ranker(data: RankingData, fraction: float = 0.01, seed: int = 0, steps: int = 300,
                        learning_rate: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a linear ranker with a listwise softmax loss (rax) on ``fraction`` of the queries.

    Features are standardised with the statistics of the whole split. Returns
    ``(weights [F], mean [F], scale [F])``; the score of ``x`` is
    ``((x - mean) / scale) @ weights``.
    """
    rng = np.random.default_rng(seed)
    has_relevant = np.maximum.reduceat(data.labels, data.query_offsets[:-1]) > 0
    candidates = np.flatnonzero(has_relevant) if has_relevant.any() else np.arange(data.num_queries)
    count = max(1, int(round(fraction * data.num_queries)))
    chosen = np.zeros(data.num_queries, bool)
    chosen[rng.choice(candidates, size=min(count, len(candidates)), replace=False)] = True
    mean = data.features.mean(axis=0)
    scale = data.features.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    sample = data.subset(chosen).padded()
    x = jnp.asarray((sample.features - mean) / scale, jnp.float32)
    y = jnp.asarray(sample.labels, jnp.float32)
    where = jnp.asarray(sample.mask)

    def loss(w):
        return rax.softmax_loss(x @ w, y, where=where) + 1e-3 * jnp.sum(w**2)

    optimizer = optax.adam(learning_rate)
    w = jnp.zeros(x.shape[-1], jnp.float32)
    state = optimizer.init(w)

    @jax.jit
    def step(w, state):
        grads = jax.grad(loss)(w)
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(w, updates), state

    for _ in range(steps):
        w, state = step(w, state)
    return np.asarray(w), mean, scale


def _pad_scores(data: RankingData, padded: PaddedRanking, values: np.ndarray) -> np.ndarray:
    scores = np.full(padded.mask.shape, -np.inf, np.float32)
    scores[padded.mask] = values
    return scores


class PolicyFamily(abc.ABC):
    """A kind of logging policy: builds a :class:`Policy` over the queries of a split."""

    name: str = ""
    #: whether the policy scores features (else the padded split needs none)
    needs_features: bool = True
    #: whether it samples a ranking per session (then documents move between ranks)
    stochastic: bool = False
    #: the SimulationConfig options it reads (setting one that no listed policy reads is an error)
    options: frozenset[str] = frozenset()

    @classmethod
    @abc.abstractmethod
    def build(cls, data: RankingData, padded: PaddedRanking, *, seed: int, fraction: float, temperature: float,
              oracle_noise: float) -> Policy:
        """The policy's scores over the queries of ``data`` (``padded`` is ``data.padded()``)."""


POLICIES: Registry[type[PolicyFamily]] = Registry("logging policy")


@POLICIES.register("production")
class Production(PolicyFamily):
    """Linear ranker trained on a small share (production_fraction) of the training queries; top-K by score."""

    name = "production"
    stochastic = False
    options = frozenset({"production_fraction"})

    @classmethod
    def build(cls, data, padded, *, seed, fraction, temperature, oracle_noise):
        w, mean, scale = train_linear_ranker(data, fraction, seed)
        values = ((data.features - mean) / scale) @ w
        return Policy(cls.name, _pad_scores(data, padded, values), temperature if cls.stochastic else 0.0,
                      {"weights": w, "mean": mean, "scale": scale})


@POLICIES.register("uniform")
class Uniform(PolicyFamily):
    """Every ranking equally likely."""

    name = "uniform"
    needs_features = False
    stochastic = True

    @classmethod
    def build(cls, data, padded, *, seed, fraction, temperature, oracle_noise):
        return Policy(cls.name, _pad_scores(data, padded, np.zeros(data.num_documents)), 1.0)


@POLICIES.register("plackett-luce")
class PlackettLuce(Production):
    """Rankings sampled per session from a Plackett-Luce model over the production ranker's scores / temperature."""

    name = "plackett-luce"
    stochastic = True
    options = frozenset({"production_fraction", "temperature"})


@POLICIES.register("noisy-oracle")
class NoisyOracle(PolicyFamily):
    """Relevance labels plus fixed Gaussian noise per document (scale oracle_noise); top-K by score."""

    name = "noisy-oracle"
    options = frozenset({"oracle_noise"})

    @classmethod
    def build(cls, data, padded, *, seed, fraction, temperature, oracle_noise):
        rng = np.random.default_rng(seed)
        values = data.labels + rng.normal(scale=oracle_noise, size=data.num_documents)
        return Policy(cls.name, _pad_scores(data, padded, values), 0.0)


def make_policy(name: str, data: RankingData, padded: PaddedRanking, *, seed: int = 0, fraction: float = 0.01,
                temperature: float = 1.0, oracle_noise: float = 1.0) -> Policy:
    """Build a logging policy over the queries of ``data`` (``padded`` is ``data.padded()``)."""
    return POLICIES[name].build(data, padded, seed=seed, fraction=fraction, temperature=temperature,
                                oracle_noise=oracle_noise)
