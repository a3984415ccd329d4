"""Exposure of documents under stochastic top-k logging policies (policy-aware propensities).

A stochastic logging policy that shows only the top ``K`` of a sampled ranking gives each document
an *expected* examination ``rho(d) = sum_k P(d at rank k) theta_k`` (0 beyond rank ``K``), which
counts the chance that ``d`` is shown at all. Policy-aware IPS weights a click on ``d`` by
``1 / rho(d)`` instead of ``1 / theta_k`` of the rank it was shown at; that is unbiased for every
document with ``rho(d) > 0`` (Oosterhuis and de Rijke, "Policy-Aware Unbiased Learning to Rank for
Top-k Rankings", SIGIR 2020), while the per-rank weight misses the documents a session did not show.

The rank marginals of a Plackett-Luce policy have no closed form; :func:`plackett_luce_rank_marginals`
estimates them by Monte-Carlo with the Gumbel-max trick (Gumbel-perturbed scores sorted give a
Plackett-Luce sample), vectorised over queries; its standard error is at most ``0.5 / sqrt(samples)``
per entry. :func:`plackett_luce_rank_marginals_exact` enumerates every top-``K`` prefix, for tests and
small lists.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from simulators.metadata import linear_policy_scores

Array = jax.Array


def plackett_luce_rank_marginals(scores, *, top_k: int, key, samples: int = 10_000, where=None,
                                 temperature: float = 1.0, batch: int = 1_000) -> Array:
    """Monte-Carlo ``P(document i at rank k)`` under a Plackett-Luce policy, ``[..., n, top_k]``.

    Args:
      scores: ``[..., n]`` logits; the policy samples rankings with probabilities
        ``prod_k exp(s_{d_k} / T) / sum_{j not yet placed} exp(s_j / T)``.
      top_k: the ranks shown (``K``); key: a ``jax.random`` key; samples: rankings per list.
      where: ``[..., n]`` bool, the documents that can be ranked (others get probability 0).
      temperature: ``T > 0``.
      batch: rankings drawn at a time (memory ``[batch, ..., n]``).

    Each entry is a mean of ``samples`` Bernoulli draws: standard error at most ``0.5 / sqrt(samples)``.

    >>> m = plackett_luce_rank_marginals(jnp.zeros(4), top_k=2, key=jax.random.key(0), samples=20_000)
    >>> bool(jnp.allclose(m, 0.25, atol=0.02)), m.shape  # uniform policy: every rank 1/4
    (True, (4, 2))
    """
    scores = jnp.asarray(scores, jnp.float32) / temperature
    where = jnp.ones(scores.shape, bool) if where is None else jnp.asarray(where, bool)
    n = scores.shape[-1]
    if not 1 <= top_k <= n:
        raise ValueError(f"top_k must be in 1..{n}, got {top_k}")
    logits = jnp.where(where, scores, -jnp.inf)

    @jax.jit
    def draw(key):
        gumbel = jax.random.gumbel(key, (batch, *logits.shape))
        perturbed = logits + gumbel
        _, order = jax.lax.top_k(perturbed, top_k)  # [batch, ..., K]: the documents at ranks 1..K
        placed = jnp.isfinite(jnp.take_along_axis(perturbed, order, axis=-1))  # not a masked document
        documents = jnp.arange(n)
        counts = [jnp.sum((order[..., k, None] == documents) & placed[..., k, None], axis=0) for k in range(top_k)]
        return jnp.stack(counts, axis=-1).astype(jnp.float32)  # [..., n, K]

    rounds = max(1, -(-samples // batch))
    total = sum(draw(k) for k in jax.random.split(key, rounds))
    return total / (rounds * batch)


def plackett_luce_rank_marginals_exact(scores: np.ndarray, *, top_k: int, where=None,
                                       temperature: float = 1.0) -> np.ndarray:
    """``P(document i at rank k)`` ``[n, top_k]`` of one list by enumerating every ordered top-``K`` prefix
    (``n! / (n - K)!`` of them: small lists only)."""
    scores = np.asarray(scores, np.float64) / temperature
    n = len(scores)
    valid = np.ones(n, bool) if where is None else np.asarray(where, bool)
    items = np.flatnonzero(valid)
    K = min(top_k, len(items))
    weights = np.exp(scores - scores[valid].max())
    marginals = np.zeros((n, top_k))
    for prefix in itertools.permutations(items, K):
        remaining = weights[valid].sum()
        probability = 1.0
        for d in prefix:
            probability *= weights[d] / remaining
            remaining -= weights[d]
        for k, d in enumerate(prefix):
            marginals[d, k] += probability
    return marginals


def expected_examination(rank_marginals, examination) -> Array:
    """``rho(d) = sum_k P(d at rank k) theta_k`` ``[..., n]`` from rank marginals ``[..., n, K]`` and
    examination ``theta [K]`` (Oosterhuis and de Rijke, SIGIR 2020, Eq. 7).

    >>> float(expected_examination(jnp.array([[0.5, 0.25]]), jnp.array([1.0, 0.5]))[0])
    0.625
    """
    rank_marginals = jnp.asarray(rank_marginals)
    examination = jnp.asarray(examination, rank_marginals.dtype)[: rank_marginals.shape[-1]]
    return jnp.einsum("...nk,k->...n", rank_marginals, examination)


def logging_exposure(metadata, data, examination, *, samples: int = 10_000, seed: int = 0,
                     max_elements: int = 4_000_000) -> np.ndarray:
    """``rho(d)`` ``[N]`` of every document of ``data`` (the split a log was simulated from) under the
    log's logging policies, from its ``simulation.json`` (``metadata``, a :class:`simulators.LogMetadata`).

    Each session draws one of the log's policies uniformly, so ``rho`` is their mean. A two-stage log
    (``candidates`` in its config) gets the joint exposure of the candidate draw and the policy's ranking of
    the candidates (:func:`ultr.two_stage.two_stage_exposure`, the same Monte-Carlo error). Only logs with
    position-based clicks qualify (``E[click | shown at k] = theta_k R``, which policy-aware IPS and the
    doubly robust estimate rest on). A Plackett-Luce
    (or uniform) policy's rank marginals are estimated with ``samples`` rankings per query
    (:func:`plackett_luce_rank_marginals`); a deterministic policy's are exact (its top ``K`` by score,
    ties by position, as the simulator ranks). ``examination``: ``theta`` per rank ``[>= K]``.
    ``max_elements`` bounds the rankings drawn at a time (memory).
    """
    config = metadata.config
    if metadata.click_model != "pbm":
        raise ValueError(f"policy-aware propensities assume the position-based model (clicks = examination x "
                         f"relevance); the log's click model is {metadata.click_model or 'unknown'}")
    if config.get("intervention"):
        raise ValueError("policy-aware propensities: the log applies interventions "
                         f"({config['intervention']}), whose exposure is not modelled")
    examination = np.asarray(examination, np.float64)
    K = int(config.get("list_size", len(examination)))
    if len(examination) < K:
        raise ValueError(f"policy-aware propensities: the examination covers {len(examination)} ranks; the log "
                         f"shows {K}")
    two_stage = config.get("candidates")
    candidate_temperature = metadata.candidate_temperature()
    padded = data.padded(with_features=False)
    mask = padded.mask
    Q, L = mask.shape
    shown = min(K, L)
    rho = np.zeros(data.num_documents)
    key = jax.random.key(seed)
    for index, model in enumerate(metadata.policy_models):
        name, temperature = model.get("name", "?"), float(model.get("temperature") or 0.0)
        if name == "uniform":
            values = np.zeros(data.num_documents)
        elif model.get("weights") is not None:  # in float32, as the simulator scores (ties must break alike)
            values = linear_policy_scores(model, data.features, np.float32)
        else:
            raise ValueError(f"policy-aware propensities: the {name} logging policy cannot be recomputed from "
                             "simulation.json (it is not a linear ranker)")
        scores = np.full(mask.shape, -np.inf, np.float32)
        scores[mask] = values
        if two_stage:  # the joint exposure of the candidate draw and the ranking of the candidates
            if temperature <= 0:
                raise ValueError(f"policy-aware propensities of two-stage logging need a stochastic ranker: the "
                                 f"{name} policy ranks the candidates deterministically (use plackett-luce)")
            from .two_stage import two_stage_exposure

            batch = int(max(1, min(samples, max_elements // (Q * L))))
            exposure = np.asarray(two_stage_exposure(
                jnp.asarray(scores / candidate_temperature), jnp.asarray(scores / temperature),
                examination[:shown], candidates=int(two_stage), key=jax.random.fold_in(key, index), samples=samples,
                where=jnp.asarray(mask), batch=batch), np.float64)
        elif temperature > 0:
            batch = int(max(1, min(samples, max_elements // (Q * L))))
            marginals = plackett_luce_rank_marginals(scores, top_k=shown, key=jax.random.fold_in(key, index),
                                                     samples=samples, where=mask, temperature=temperature,
                                                     batch=batch)
            exposure = np.asarray(expected_examination(marginals, examination[:shown]), np.float64)
        else:
            order = np.argsort(-scores, axis=1, kind="stable")[:, :shown]
            exposure = np.zeros(mask.shape)
            exposure[np.arange(Q)[:, None], order] = examination[:shown]
            exposure = np.where(mask, exposure, 0.0)
        rho += exposure[mask] / len(metadata.policy_models)
    return rho


__all__ = ["expected_examination", "logging_exposure", "plackett_luce_rank_marginals",
           "plackett_luce_rank_marginals_exact"]
