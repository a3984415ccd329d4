"""Two-stage ranking policies: joint exposure, the two-stage IPS estimator and its policy gradients.

A two-stage system ranks in two steps (Gupta, Liao and de Rijke, "Towards Two-Stage Counterfactual
Learning to Rank", ICTIR 2025): a candidate generator ``pi_c`` draws ``K2`` candidates from the query's
pool ``D`` (a Plackett-Luce sample over its scores, keeping the top ``K2``), and a ranker ``pi_r``
orders the candidates (a Plackett-Luce sample over its scores restricted to them) and shows the top
``K``. A document's *joint exposure* is its expected rank weight over both stages,

    rho_{c,r}(d) = E_{y_c ~ pi_c} E_{y_r ~ pi_r(. | y_c)} [theta_{k(d)}]      (0 when not shown),

with ``theta`` the examination per rank (or a DCG discount), and the value of the pipeline is
``V(pi_c, pi_r) = sum_d rho_{c,r}(d) R(d)``. Under position-based clicks (``E[c(d)] = rho_0(d) R(d)``
for a logging pipeline with joint exposure ``rho_0``) the two-stage IPS estimate
``sum_d rho_{c,r}(d) c(d) / rho_0(d)`` of a session is unbiased for it (:func:`two_stage_ips_value`).

Every function takes logits (scores divided by the temperature), is pure and vectorised over leading
batch axes ``[...]`` (queries or sessions), with a bool ``where [..., n]`` for the real documents.
Sampling uses the Gumbel-max trick: the top ``m`` of Gumbel-perturbed logits is a Plackett-Luce
sample of an ordered ``m``-prefix.

Gradients (the learners of :mod:`ultr.learners.two_stage` maximise their surrogates):

* :func:`reinforce_surrogates`: the score-function (REINFORCE) gradient of each stage, with a
  leave-one-out baseline; unbiased for the gradient of ``V``.
* :func:`credit_assigned_surrogate`: the candidate generator's credit-assigned gradient (after Kiyohara
  et al., "Credit-assigned Policy Gradient for Early Stage Retrieval in Two-stage Ranking", arXiv
  2605.26385, 2026): each document is credited with its own rank weight times relevance, and the
  gradient flows through its *inclusion probability* ``P(d in y_c)``, marginalised over the candidate
  sets that contain it, instead of through the probability of the whole set.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _scatter_add(indices, values, n: int) -> Array:
    """``out[..., j] = sum_k values[..., k] [indices[..., k] == j]`` ``[..., n]`` (a flat scatter-add: no
    ``[..., k, n]`` comparison)."""
    batch = indices.shape[:-1]
    rows = int(np.prod(batch)) if batch else 1
    offsets = (jnp.arange(rows, dtype=jnp.int32) * n).reshape(*batch, 1) if batch else jnp.int32(0)
    flat = jnp.zeros(rows * n, values.dtype).at[(indices + offsets).reshape(-1)].add(values.reshape(-1))
    return flat.reshape(*batch, n)


_NEG = -1e9  # a finite "minus infinity" for masked logits


def _valid(logits, where):
    return jnp.isfinite(logits) if where is None else jnp.asarray(where, bool) & jnp.isfinite(logits)


def gumbel_top_k(key, logits, k: int, where=None, samples: int | None = None):
    """Plackett-Luce samples of ordered ``k``-prefixes by the Gumbel-max trick.

    Args:
      logits: ``[..., n]``; where: ``[..., n]`` bool; samples: a leading axis ``S`` (None: one sample).

    Returns: ``(order [S?, ..., k] int32, valid [S?, ..., k] bool, perturbed [S?, ..., n])``; ``valid``
    is False for slots beyond the real documents of short lists, and ``perturbed`` is ``-inf`` on padding.
    """
    valid = _valid(logits, where)
    shape = logits.shape if samples is None else (samples, *logits.shape)
    perturbed = jnp.where(valid, logits + jax.random.gumbel(key, shape, jnp.float32), -jnp.inf)
    values, order = jax.lax.top_k(perturbed, k)
    return order.astype(jnp.int32), jnp.isfinite(values), perturbed


def plackett_luce_log_prob(logits, order, order_valid, where=None) -> Array:
    """``log P(order)`` of an ordered prefix under Plackett-Luce over ``logits`` restricted to ``where``.

    ``log P = sum_k [s_{y_k} - log sum_{j not in y_<k} exp(s_j)]``; the log-normalisers are the
    log-sum-exp of the documents never placed joined with a reverse cumulative log-sum-exp over the prefix:
    no subtraction (no cancellation when the prefix holds most of the mass) and no underflow when the
    remaining documents score far below the first.

    Args:
      logits: ``[..., n]``; order: ``[..., m]`` indices; order_valid: ``[..., m]`` bool; where: ``[..., n]``.

    Returns: ``[...]``.

    >>> s = jnp.log(jnp.array([1.0, 2.0, 3.0]))
    >>> round(float(jnp.exp(plackett_luce_log_prob(s, jnp.array([2, 0]), jnp.array([True, True])))), 6)  # 3/6 * 1/3
    0.166667
    """
    batch = jnp.broadcast_shapes(order.shape[:-1], logits.shape[:-1],
                                 () if where is None else jnp.shape(where)[:-1])
    logits = jnp.broadcast_to(logits, (*batch, logits.shape[-1]))
    order = jnp.broadcast_to(order, (*batch, order.shape[-1]))
    order_valid = jnp.broadcast_to(order_valid, order.shape)
    valid = _valid(logits, None if where is None else jnp.broadcast_to(where, logits.shape))
    n = logits.shape[-1]
    # finite stand-ins for the masked logits: no inf - inf or 0 * inf in the forward or backward pass
    safe = jnp.where(valid, logits, _NEG)
    placed = _scatter_add(order, order_valid.astype(jnp.float32), n) > 0  # [..., n]
    log_never_placed = jax.nn.logsumexp(jnp.where(valid & ~placed, safe, _NEG), axis=-1, keepdims=True)
    chosen = jnp.where(order_valid, jnp.take_along_axis(safe, order, axis=-1), _NEG)  # [..., m]
    # log of the mass left at rank k: the documents never placed plus the prefix from k on
    log_remaining = jnp.logaddexp(log_never_placed, jax.lax.cumlogsumexp(chosen, axis=chosen.ndim - 1, reverse=True))
    terms = chosen - log_remaining
    return jnp.sum(jnp.where(order_valid, terms, 0.0), axis=-1)


def sample_two_stage(key, candidate_logits, ranker_logits, *, candidates: int, top_k: int, samples: int,
                     where=None):
    """Rankings of a two-stage Plackett-Luce pipeline.

    Returns a dict of ``[S, ..., *]`` arrays: ``candidates`` (the ``K2`` drawn, in draw order) with
    ``candidates_valid``, ``member`` ``[S, ..., n]`` (in the candidate set), ``ranking`` (the top
    ``K`` of the ranker's sample over the candidates) with ``ranking_valid``, and the Gumbel-perturbed
    logits of both stages ``candidate_perturbed`` and ``ranker_perturbed`` ``[S, ..., n]``.
    """
    n = candidate_logits.shape[-1]
    valid = _valid(candidate_logits, where)
    key_c, key_r = jax.random.split(key)
    cand, cand_valid, cand_perturbed = gumbel_top_k(key_c, candidate_logits, min(candidates, n), valid, samples)
    member = _scatter_add(cand, cand_valid.astype(jnp.float32), n) > 0
    ranker_valid = member & valid
    ranker_perturbed = jnp.where(ranker_valid, ranker_logits + jax.random.gumbel(key_r, member.shape), -jnp.inf)
    values, ranking = jax.lax.top_k(ranker_perturbed, min(top_k, n))
    # the ranker's Gumbels for every pool document (candidates or not), for credit assignment
    ranker_all = jnp.where(valid & ~member, ranker_logits + jax.random.gumbel(jax.random.fold_in(key_r, 1),
                                                                               member.shape), ranker_perturbed)
    return {"candidates": cand, "candidates_valid": cand_valid, "member": member,
            "ranking": ranking.astype(jnp.int32), "ranking_valid": jnp.isfinite(values),
            "candidate_perturbed": cand_perturbed, "ranker_perturbed": ranker_all}


def _rank_weights(ranking, ranking_valid, examination, n: int) -> Array:
    """``theta`` of each pool document's rank in ``ranking`` ``[..., n]`` (0 when not shown)."""
    theta = jnp.asarray(examination, jnp.float32)[: ranking.shape[-1]]
    return _scatter_add(ranking, jnp.where(ranking_valid, theta, 0.0), n)


def two_stage_exposure(candidate_logits, ranker_logits, examination, *, candidates: int, key, samples: int = 10_000,
                       where=None, batch: int = 1_000) -> Array:
    """Monte-Carlo joint exposure ``rho_{c,r}(d)`` ``[..., n]`` of a two-stage Plackett-Luce pipeline.

    ``examination``: ``theta`` per shown rank ``[K]`` (``K`` ranks shown). Each entry is a mean of
    ``samples`` draws of ``theta_{k(d)}`` in ``[0, max theta]``: its standard error is at most
    ``max(theta) / (2 sqrt(samples))``. ``batch``: pipelines sampled at a time (memory ``[batch, ..., n]``).

    >>> rho = two_stage_exposure(jnp.zeros(4), jnp.zeros(4), jnp.array([1.0, 0.5]), candidates=3,
    ...                          key=jax.random.key(0), samples=20_000)
    >>> bool(jnp.allclose(rho, 1.5 / 4, atol=0.02))  # uniform stages: every document 1/4 at each rank
    True
    """
    examination = jnp.asarray(examination, jnp.float32)
    n = candidate_logits.shape[-1]

    @jax.jit
    def draw(key):
        out = sample_two_stage(key, candidate_logits, ranker_logits, candidates=candidates,
                               top_k=len(examination), samples=batch, where=where)
        return jnp.sum(_rank_weights(out["ranking"], out["ranking_valid"], examination, n), axis=0)

    rounds = max(1, -(-samples // batch))
    total = sum(draw(k) for k in jax.random.split(key, rounds))
    return total / (rounds * batch)


def two_stage_exposure_exact(candidate_logits, ranker_logits, examination, *, candidates: int) -> Array:
    """Joint exposure ``rho_{c,r}(d)`` ``[n]`` of one list by enumerating every ordered candidate prefix and
    every ranking of each candidate set: ``n! / (n - K2)! * K2! / (K2 - K)!`` terms, small pools only.
    Differentiable in both logits (the exact gradient for tests of the policy-gradient estimators)."""
    n = candidate_logits.shape[-1]
    examination = jnp.asarray(examination, jnp.float32)
    K = len(examination)
    prefixes = np.array(list(itertools.permutations(range(n), candidates)), np.int32)  # [P, K2]
    orders = np.array(list(itertools.permutations(range(candidates), K)), np.int32)  # [R, K] slots of the set
    member = np.zeros((len(prefixes), n), bool)
    member[np.arange(len(prefixes))[:, None], prefixes] = True
    rankings = prefixes[:, orders]  # [P, R, K] documents
    log_pc = plackett_luce_log_prob(candidate_logits, jnp.asarray(prefixes), jnp.ones(prefixes.shape, bool))  # [P]
    log_pr = plackett_luce_log_prob(jnp.broadcast_to(ranker_logits, (len(prefixes), len(orders), n)),
                                    jnp.asarray(rankings), jnp.ones(rankings.shape, bool),
                                    where=jnp.asarray(member)[:, None, :])  # [P, R]
    weight = jnp.exp(log_pc[:, None] + log_pr)  # [P, R]
    one_hot = jnp.asarray(rankings[..., None] == np.arange(n), jnp.float32)  # [P, R, K, n]
    return jnp.einsum("pr,k,prkn->n", weight, examination, one_hot)


def two_stage_ips_value(target_exposure, clicks, logging_exposure, *, where=None, clip: float = 0.0) -> Array:
    """The two-stage IPS estimate ``sum_d rho_{c,r}(d) c(d) / rho_0(d)`` ``[...]`` of a pipeline's value
    from a session's clicks over the query's pool ``[..., n]`` (Gupta et al., ICTIR 2025):
    ``rho_{c,r}`` the target pipeline's joint exposure, ``rho_0`` the logging pipeline's. Unbiased for
    ``sum_d rho_{c,r}(d) R(d)`` under position-based clicks wherever ``rho_0 > 0`` (``clip`` bounds
    ``rho_0`` below, trading that for variance).

    >>> float(two_stage_ips_value(jnp.array([0.5, 0.2]), jnp.array([1.0, 0.0]), jnp.array([0.25, 0.5])))
    2.0
    """
    clicks = jnp.asarray(clicks, jnp.float32)
    where = jnp.ones(clicks.shape, bool) if where is None else jnp.asarray(where, bool)
    weights = jnp.where(where, target_exposure / jnp.maximum(logging_exposure, max(clip, 1e-12)), 0.0)
    return jnp.sum(jnp.where(where, weights * clicks, 0.0), axis=-1)


def _leave_one_out(values):
    """The mean of the other samples ``[S, ...]``: a baseline that keeps the estimator unbiased."""
    S = values.shape[0]
    return (jnp.sum(values, axis=0, keepdims=True) - values) / max(S - 1, 1)


def reinforce_surrogates(key, candidate_logits, ranker_logits, relevance, examination, *, candidates: int,
                         samples: int, where=None, baseline: bool = True):
    """Surrogates whose gradients are the REINFORCE estimates of ``grad V`` for each stage, ``[...]`` each.

    With ``S`` pipelines sampled, ``U_s = sum_k theta_k r(y_r^s[k])`` and the leave-one-out baseline
    ``b_s`` (the mean of the other samples' ``U``; 0 without ``baseline``):

    * candidate generator: ``mean_s (U_s - b_s) log pi_c(y_c^s)``;
    * ranker: ``mean_s (U_s - b_s) log pi_r(y_r^s | y_c^s)``.

    (The candidate generator's sample is an ordered prefix; its order does not change ``U``, so the
    score function of the ordered draw is as unbiased as that of the set, and needs no sum over orders.)

    ``relevance [..., n]`` (e.g. a session's ``c / rho_0``) carries no gradient. Their expectations'
    gradients are ``grad V`` with respect to each stage's logits (the likelihood-ratio identity).
    Returns ``(candidate_surrogate, ranker_surrogate, utility)`` with ``utility`` the mean ``U``.
    """
    relevance = jax.lax.stop_gradient(jnp.asarray(relevance, jnp.float32))
    n = candidate_logits.shape[-1]
    out = sample_two_stage(key, jax.lax.stop_gradient(candidate_logits), jax.lax.stop_gradient(ranker_logits),
                           candidates=candidates, top_k=len(examination), samples=samples, where=where)
    utility = jnp.sum(_rank_weights(out["ranking"], out["ranking_valid"], examination, n) * relevance, axis=-1)
    advantage = jax.lax.stop_gradient(utility - (_leave_one_out(utility) if baseline else 0.0))  # [S, ...]
    log_pc = plackett_luce_log_prob(candidate_logits, out["candidates"], out["candidates_valid"], where)
    log_pr = plackett_luce_log_prob(ranker_logits, out["ranking"], out["ranking_valid"], out["member"])
    return jnp.mean(advantage * log_pc, axis=0), jnp.mean(advantage * log_pr, axis=0), jnp.mean(utility, axis=0)


def inclusion_probabilities(candidate_perturbed, candidate_logits, *, candidates: int, where=None) -> Array:
    """Rao-Blackwellised, differentiable estimates of ``P(d in y_c)`` ``[S, ..., n]``, one per sample.

    Given the other documents' perturbed logits of a sample, ``d`` is a candidate when its own perturbed
    logit beats ``tau_{-d}``, the ``K2``-th largest of the others' (the ``K2 + 1``-th largest overall when
    ``d`` is among the top ``K2``, else the ``K2``-th): probability ``1 - exp(-exp(s_d - tau_{-d}))`` under
    its Gumbel noise. The mean over samples is unbiased for the inclusion probability, and its gradient
    (through ``s_d`` and, pathwise, through the others' logits in ``tau``) for the inclusion probability's
    gradient.
    """
    n = candidate_logits.shape[-1]
    valid = _valid(candidate_logits, where)
    noise = jax.lax.stop_gradient(candidate_perturbed - candidate_logits)  # the Gumbels, fixed
    perturbed = jnp.where(valid, candidate_logits + jnp.where(valid, noise, 0.0), -jnp.inf)
    k = min(candidates, n)
    if k >= n:
        return jnp.broadcast_to(jnp.where(valid, 1.0, 0.0), candidate_perturbed.shape)
    top, _ = jax.lax.top_k(perturbed, k + 1)  # [S, ..., K2 + 1]
    kth, next_ = top[..., k - 1:k], top[..., k:k + 1]
    inside = perturbed >= kth
    tau = jnp.where(inside, next_, kth)
    # lists with at most K2 real documents: everyone is a candidate
    always = ~jnp.isfinite(tau)
    logits = jnp.where(valid, candidate_logits, 0.0)
    gap = jnp.where(always, 0.0, logits - jnp.where(always, 0.0, tau))
    probability = -jnp.expm1(-jnp.exp(jnp.minimum(gap, 30.0)))  # exactly 1 in float32 beyond: no inf gradient
    return jnp.where(valid, jnp.where(always, 1.0, probability), 0.0)


def credit_assigned_surrogate(key, candidate_logits, ranker_logits, relevance, examination, *, candidates: int,
                              samples: int, where=None, baseline: bool = True):
    """Surrogate ``[...]`` whose gradient is the credit-assigned policy gradient of the candidate generator.

    ``mean_s sum_d w_s(d) P̂_s(d in y_c)`` with the credit ``w_s(d) = r(d) a_s(d)``: ``a_s(d)`` the
    examination ``theta`` at the rank sample ``s``'s ranker gives ``d`` among the ``K2 - 1`` other sampled
    candidates (a document not drawn takes the place of the last candidate drawn), and ``P̂`` the Rao-Blackwellised inclusion probabilities of
    :func:`inclusion_probabilities` (gradient through them only). It credits each document with its own
    contribution instead of the whole set's utility, and ignores how the set's composition moves ``d``'s
    rank: exact when the ranker's rank weight of a candidate does not depend on the other candidates,
    otherwise a low-variance approximation that keeps the ranking of documents by credit (Kiyohara et al.,
    arXiv 2605.26385, 2026). Each sample's credits are paired with its own inclusion estimates (given the
    other documents' Gumbels, both are functions of the same draw). ``baseline`` subtracts the other
    samples' mean credit over the pool: independent of the sample it corrects, and ``sum_d P(d in y_c) =
    K2`` is constant, so the expected gradient is unchanged.
    """
    relevance = jax.lax.stop_gradient(jnp.asarray(relevance, jnp.float32))
    n = candidate_logits.shape[-1]
    valid = _valid(candidate_logits, where)
    K = len(examination)
    out = sample_two_stage(key, jax.lax.stop_gradient(candidate_logits), jax.lax.stop_gradient(ranker_logits),
                           candidates=candidates, top_k=K, samples=samples, where=where)
    ranker = out["ranker_perturbed"]  # [S, ..., n]
    k = min(K, n)
    shown_values, _ = jax.lax.top_k(jnp.where(out["member"], ranker, -jnp.inf), k)
    # had d (not a candidate) been drawn, it would have displaced the last candidate drawn
    last = jnp.take_along_axis(out["candidates"], jnp.maximum(jnp.sum(out["candidates_valid"], -1, keepdims=True)
                                                               - 1, 0), axis=-1)  # [S, ..., 1]
    kept = out["member"] & (jnp.arange(n) != last)
    kept_values, _ = jax.lax.top_k(jnp.where(kept, ranker, -jnp.inf), k)
    # rank of d among the K2 - 1 other candidates: the top-K values above it
    above_member = jnp.sum(shown_values[..., None, :] > ranker[..., :, None], axis=-1)  # [S, ..., n]
    above_other = jnp.sum(kept_values[..., None, :] > ranker[..., :, None], axis=-1)
    above = jnp.where(out["member"], above_member, above_other)
    theta = jnp.concatenate([jnp.asarray(examination, jnp.float32), jnp.zeros(1)])
    rank_weight = jnp.where(valid, theta[jnp.minimum(above, K)], 0.0)
    credit = relevance * rank_weight  # [S, ..., n]: each sample's credit, paired with its inclusion estimate
    if baseline:  # the other samples' mean credit: independent of this sample, so the gradient stays unbiased
        count = jnp.maximum(jnp.sum(valid, axis=-1, keepdims=True), 1)
        credit = credit - _leave_one_out(jnp.sum(jnp.where(valid, credit, 0.0), axis=-1, keepdims=True) / count)
    credit = jax.lax.stop_gradient(jnp.where(valid, credit, 0.0))
    inclusion = inclusion_probabilities(out["candidate_perturbed"], candidate_logits, candidates=candidates,
                                        where=valid)
    return jnp.sum(jnp.mean(credit * inclusion, axis=0), axis=-1)


def deterministic_pipeline_scores(candidate_scores, ranker_scores, *, candidates: int, where=None) -> Array:
    """Scores ``[..., n]`` whose descending order is the deployed two-stage ranking: the top ``K2`` of
    the candidate generator, ordered by the ranker, then the other documents by the candidate generator's
    scores (a rank code, so any metric over the scores evaluates the final ranking).

    >>> deterministic_pipeline_scores(jnp.array([3.0, 2.0, 1.0, 0.0]), jnp.array([0.0, 1.0, 5.0, 9.0]),
    ...                               candidates=2).tolist()  # candidates 0, 1; the ranker puts 1 first
    [3.0, 4.0, 2.0, 1.0]
    """
    n = candidate_scores.shape[-1]
    valid = _valid(candidate_scores, where)
    c = jnp.where(valid, candidate_scores, -jnp.inf)
    k = min(candidates, n)
    _, cand = jax.lax.top_k(c, k)
    member = _scatter_add(cand, jnp.isfinite(jnp.take_along_axis(c, cand, -1)).astype(jnp.float32), n) > 0
    r = jnp.where(member, ranker_scores, -jnp.inf)
    rank_in_candidates = jnp.argsort(jnp.argsort(-r, axis=-1, stable=True), axis=-1, stable=True)
    rank_outside = jnp.argsort(jnp.argsort(-jnp.where(member, -jnp.inf, c), axis=-1, stable=True), axis=-1,
                               stable=True)
    position = jnp.where(member, rank_in_candidates, k + rank_outside)  # 0-based final position
    return jnp.where(valid, (n - position).astype(jnp.float32), -jnp.inf)


__all__ = ["credit_assigned_surrogate", "deterministic_pipeline_scores", "gumbel_top_k", "inclusion_probabilities",
           "plackett_luce_log_prob", "reinforce_surrogates", "sample_two_stage", "two_stage_exposure",
           "two_stage_exposure_exact", "two_stage_ips_value"]
