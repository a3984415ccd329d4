"""The click models, named and parameterised as in Chuklin, Markov and de Rijke,
*Click Models for Web Search* (2015).

Every model is a batch of distributions over click vectors ``[..., K]`` with

* ``sample(key, sample_shape=())`` -> bool ``sample_shape + batch + [K]``;
* ``log_prob(clicks)`` -> exact log-likelihood ``[...]``;
* ``click_probs()`` -> marginal ``P(C_k = 1)`` ``[..., K]``;
* ``conditional_click_probs(clicks)`` -> ``P(C_k = 1 | C_<k)`` ``[..., K]``.

>>> import jax, jax.numpy as jnp
>>> pbm = PBM(attraction=jnp.array([0.5, 0.5]), examination=jnp.array([1.0, 0.5]))
>>> pbm.click_probs().tolist()
[0.5, 0.25]
>>> float(jnp.exp(pbm.log_prob(jnp.array([True, False]))))
0.375
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._base import (
    DOCUMENT,
    RANK,
    RANK_RANK,
    SESSION,
    ChainClickModel,
    ClickModel,
    IndependentClickModel,
    log_add,
)
from ._random import uniform
from .registry import Registry

CLICK_MODELS: Registry[type[ClickModel]] = Registry("click model")
"""Every click model by name (``trust_bias`` also answers to ``trust-bias``)."""

NEG_INF = -jnp.inf


@CLICK_MODELS.register()
class PBM(IndependentClickModel):
    """Position-based model (Craswell et al., WSDM 2008; Chuklin et al. 2015, sec. 3.3).

    ``P(C_k = 1) = attraction_k * examination_k``, independently per rank.

    Args:
      attraction: ``[..., K]`` probability that the document at rank k attracts.
      examination: ``[K]`` or ``[..., K]`` probability that rank k is examined.
      mask: optional bool ``[..., K]``; False marks padding.
    """

    name = "pbm"
    parameter_kinds = {"attraction": DOCUMENT, "examination": RANK}

    def __init__(self, attraction, examination, *, mask=None):
        self._init_from_probabilities(mask=mask, attraction=attraction, examination=examination)

    cell_em = "rank"

    @classmethod
    def simulation_defaults(cls, examination):
        return {"examination": np.asarray(examination, np.float64)}

    def _log_click(self):
        la, lna = self._terms("attraction")
        le, lne = self._terms("examination")
        return la + le, log_add(lne, le + lna)

    def _sampling_click_probs(self):
        return self._prob("attraction") * self._prob("examination")


@CLICK_MODELS.register(aliases=("trustbias",))
class TrustBias(IndependentClickModel):
    """Trust bias with click noise (Agarwal et al., WWW 2019; Vardasbi et al., SIGIR 2020).

    ``P(C_k = 1) = examination_k * (epsilon_pos_k * R_k + epsilon_neg_k * (1 - R_k))``:
    an examined relevant document is clicked with ``epsilon_pos``, an examined
    non-relevant one with ``epsilon_neg`` (the user trusts high ranks).

    Args:
      examination: ``[K]`` or ``[..., K]``, theta_k.
      epsilon_pos: ``[K]`` or ``[..., K]``, click probability of relevant documents.
      epsilon_neg: ``[K]`` or ``[..., K]``, click probability of non-relevant ones.
      relevance: ``[..., K]``, probability R that the document is relevant.
      mask: optional bool ``[..., K]``.
    """

    name = "trust_bias"
    parameter_kinds = {
        "relevance": DOCUMENT,
        "examination": RANK,
        "epsilon_pos": RANK,
        "epsilon_neg": RANK,
    }
    relevance_parameter = "relevance"

    @classmethod
    def simulation_defaults(cls, examination):
        K = len(examination)
        return {"examination": np.asarray(examination, np.float64), "epsilon_pos": np.ones(K),
                "epsilon_neg": 0.65 / np.arange(1, K + 1)}

    def __init__(self, examination, epsilon_pos, epsilon_neg, relevance, *, mask=None):
        self._init_from_probabilities(
            mask=mask,
            examination=examination,
            epsilon_pos=epsilon_pos,
            epsilon_neg=epsilon_neg,
            relevance=relevance,
        )

    def _log_click(self):
        lr, lnr = self._terms("relevance")
        le, lne = self._terms("examination")
        lp, lnp = self._terms("epsilon_pos")
        ln, lnn = self._terms("epsilon_neg")
        clicked_if_examined = log_add(lp + lr, ln + lnr)
        skipped_if_examined = log_add(lnp + lr, lnn + lnr)
        return le + clicked_if_examined, log_add(lne, le + skipped_if_examined)


@CLICK_MODELS.register()
class Cascade(ChainClickModel):
    """Cascade model (Craswell et al., WSDM 2008; Chuklin et al. 2015, sec. 3.4).

    The user scans top-down, clicks an examined document with its attraction
    and stops after the first click. Sessions with more than one click have
    probability 0 (``log_prob = -inf``).

    Args:
      attraction: ``[..., K]``.
      mask: optional bool ``[..., K]``.
    """

    name = "cascade"
    parameter_kinds = {"attraction": DOCUMENT}
    counting_rule = "first_click"

    def __init__(self, attraction, *, mask=None):
        self._init_from_probabilities(mask=mask, attraction=attraction)

    def _chain_terms(self):
        la, lna = self._terms("attraction")
        zero, neg = jnp.zeros_like(la), jnp.full_like(la, NEG_INF)
        return dict(attr=la, not_attr=lna, cont_click=neg, stop_click=zero, cont_skip=zero, stop_skip=neg)

    def sample(self, key, sample_shape=()):
        # One uniform per session: the first (and only) click is at rank k when F_(k-1) <= u < F_k, with
        # F_k = 1 - prod_(j <= k) (1 - attraction_j) the probability of a click at or above k.
        sample_shape = self._sample_shape(sample_shape)
        shape = self.batch_shape + (self.list_size,)
        attraction = jnp.where(self._valid(), jnp.broadcast_to(self._prob("attraction"), shape), 0.0)
        clicked_by = 1.0 - jnp.cumprod(1.0 - attraction, axis=-1)
        u = uniform(key, sample_shape + self.batch_shape + (1,), attraction.dtype)
        before = jnp.concatenate([jnp.zeros_like(clicked_by[..., :1]), clicked_by[..., :-1]], axis=-1)
        return (u >= before) & (u < clicked_by)


@CLICK_MODELS.register()
class DBN(ChainClickModel):
    """Dynamic Bayesian network model (Chapelle and Zhang, WWW 2009; Chuklin et al. sec. 3.8).

    An examined document is clicked with ``attraction``; a click satisfies the
    user with ``satisfaction`` (then she stops); otherwise she goes on with
    probability ``continuation`` (gamma).

    Args:
      attraction: ``[..., K]``.
      satisfaction: ``[..., K]``.
      continuation: scalar or ``[...]`` (gamma).
      mask: optional bool ``[..., K]``.
    """

    name = "dbn"
    parameter_kinds = {"attraction": DOCUMENT, "satisfaction": DOCUMENT, "continuation": SESSION}

    @classmethod
    def simulation_defaults(cls, examination):
        return {"continuation": np.asarray(0.9)}

    def __init__(self, attraction, satisfaction, continuation, *, mask=None):
        self._init_from_probabilities(
            mask=mask, attraction=attraction, satisfaction=satisfaction, continuation=continuation
        )

    def _gamma_terms(self):
        return self._terms("continuation")

    def _gamma_prob(self):
        return self._prob("continuation")

    def _chain_probabilities(self):
        attraction = self._prob("attraction")
        gamma = self._gamma_prob()
        return attraction, (1.0 - self._prob("satisfaction")) * gamma, gamma + jnp.zeros_like(attraction)

    def _chain_terms(self):
        la, lna = self._terms("attraction")
        ls, lns = self._terms("satisfaction")
        lg, lng = self._gamma_terms()
        return dict(
            attr=la,
            not_attr=lna,
            cont_click=lns + lg,
            stop_click=log_add(ls, lns + lng),
            cont_skip=lg + jnp.zeros_like(la),
            stop_skip=lng + jnp.zeros_like(la),
        )


@CLICK_MODELS.register()
class SDBN(DBN):
    """Simplified DBN (Chapelle and Zhang, WWW 2009): DBN with ``continuation = 1``.

    Args:
      attraction: ``[..., K]``.
      satisfaction: ``[..., K]``.
      mask: optional bool ``[..., K]``.
    """

    name = "sdbn"
    parameter_kinds = {"attraction": DOCUMENT, "satisfaction": DOCUMENT}
    counting_rule = "last_click"

    @classmethod
    def simulation_defaults(cls, examination):
        return {}

    def __init__(self, attraction, satisfaction, *, mask=None):
        self._init_from_probabilities(mask=mask, attraction=attraction, satisfaction=satisfaction)

    def _gamma_terms(self):
        la, _ = self._terms("attraction")
        return jnp.zeros_like(la[..., :1]), jnp.full_like(la[..., :1], NEG_INF)

    def _gamma_prob(self):
        return jnp.ones((), self._prob("attraction").dtype)


@CLICK_MODELS.register()
class DCM(ChainClickModel):
    """Dependent click model (Guo, Liu and Wang, WSDM 2009; Chuklin et al. sec. 3.5).

    The user examines top-down, clicks with ``attraction``; after a click at
    rank k she goes on with ``continuation[k]`` (lambda_k), after a non-click
    she always goes on.

    Args:
      attraction: ``[..., K]``.
      continuation: ``[K]`` or ``[..., K]`` (lambda per rank).
      mask: optional bool ``[..., K]``.
    """

    name = "dcm"
    parameter_kinds = {"attraction": DOCUMENT, "continuation": RANK}
    counting_rule = "last_click"

    @classmethod
    def simulation_defaults(cls, examination):
        return {"continuation": np.linspace(0.9, 0.5, len(examination))}

    def __init__(self, attraction, continuation, *, mask=None):
        self._init_from_probabilities(mask=mask, attraction=attraction, continuation=continuation)

    def _chain_terms(self):
        la, lna = self._terms("attraction")
        ll, lnl = self._terms("continuation")
        zero, neg = jnp.zeros_like(la), jnp.full_like(la, NEG_INF)
        return dict(
            attr=la, not_attr=lna, cont_click=ll + zero, stop_click=lnl + zero, cont_skip=zero, stop_skip=neg
        )

    def _chain_probabilities(self):
        attraction = self._prob("attraction")
        return attraction, self._prob("continuation") + jnp.zeros_like(attraction), jnp.ones_like(attraction)


@CLICK_MODELS.register()
class CCM(ChainClickModel):
    """Click chain model (Guo et al., WWW 2009; Chuklin et al. sec. 3.7).

    An examined document is clicked with its relevance ``attraction`` (R).
    After an examined non-click the user goes on with ``tau1``; after a click
    with ``tau2 * (1 - R) + tau3 * R``.

    Args:
      attraction: ``[..., K]``.
      tau1, tau2, tau3: scalars or ``[...]``.
      mask: optional bool ``[..., K]``.
    """

    name = "ccm"
    parameter_kinds = {"attraction": DOCUMENT, "tau1": SESSION, "tau2": SESSION, "tau3": SESSION}

    @classmethod
    def simulation_defaults(cls, examination):
        return {"tau1": np.asarray(0.8), "tau2": np.asarray(0.5), "tau3": np.asarray(0.9)}

    def __init__(self, attraction, tau1, tau2, tau3, *, mask=None):
        self._init_from_probabilities(mask=mask, attraction=attraction, tau1=tau1, tau2=tau2, tau3=tau3)

    def _chain_terms(self):
        la, lna = self._terms("attraction")
        l1, ln1 = self._terms("tau1")
        l2, ln2 = self._terms("tau2")
        l3, ln3 = self._terms("tau3")
        zero = jnp.zeros_like(la)
        return dict(
            attr=la,
            not_attr=lna,
            cont_click=log_add(l2 + lna, l3 + la),
            stop_click=log_add(ln2 + lna, ln3 + la),
            cont_skip=l1 + zero,
            stop_skip=ln1 + zero,
        )


@CLICK_MODELS.register()
class UBM(ClickModel):
    """User browsing model (Dupret and Piwowarski, SIGIR 2008; Chuklin et al. sec. 3.6).

    ``P(C_k = 1 | C_<k) = attraction_k * examination[k, r]`` with ``r`` the rank
    (1-based) of the last click above k, 0 when there was none.

    Args:
      attraction: ``[..., K]``.
      examination: ``[K, K]`` or ``[..., K, K]``, indexed ``[rank - 1, previous click rank]``.
      mask: optional bool ``[..., K]``.
    """

    name = "ubm"
    parameter_kinds = {"attraction": DOCUMENT, "examination": RANK_RANK}
    cell_em = "previous_click"

    @classmethod
    def simulation_defaults(cls, examination):
        # examination decays with the distance to the previous click: gamma[k, r] = exam[k - r - 1]
        exam = np.asarray(examination, np.float64)
        K = len(exam)
        k, r = np.meshgrid(np.arange(K), np.arange(K), indexing="ij")
        distance = np.where(r == 0, k, k - r)
        return {"examination": np.where(r <= k, exam[np.clip(distance, 0, K - 1)], exam[0])}

    def __init__(self, attraction, examination, *, mask=None):
        self._init_from_probabilities(mask=mask, attraction=attraction, examination=examination)

    def _previous_click_rank(self, clicks, valid):
        ranks = jnp.arange(1, self.list_size + 1, dtype=jnp.int32)
        clicked_rank = jnp.where(clicks & valid, ranks, 0)
        last = jax.lax.cummax(clicked_rank, axis=clicked_rank.ndim - 1)
        return jnp.concatenate([jnp.zeros_like(last[..., :1]), last[..., :-1]], axis=-1)

    def _examination_at(self, previous, shape):
        """Gather ``log examination[k, previous_k]`` and its complement, ``shape``."""
        le, lne = self._terms("examination")
        k = jnp.arange(self.list_size)
        if le.ndim == 2:
            return le[k, previous], lne[k, previous]
        le = jnp.broadcast_to(le, shape + (self.list_size,))
        lne = jnp.broadcast_to(lne, shape + (self.list_size,))
        index = previous[..., None]
        return (
            jnp.take_along_axis(le, index, axis=-1)[..., 0],
            jnp.take_along_axis(lne, index, axis=-1)[..., 0],
        )

    def _log_conditionals(self, clicks):
        shape = jnp.broadcast_shapes(clicks.shape, self.batch_shape + (self.list_size,))
        valid = jnp.broadcast_to(self._valid(), shape)
        clicks = jnp.broadcast_to(clicks, shape)
        previous = self._previous_click_rank(clicks, valid)
        le, lne = self._examination_at(previous, shape)
        la, lna = self._terms("attraction")
        la, lna = jnp.broadcast_to(la, shape), jnp.broadcast_to(lna, shape)
        return la + le, log_add(lne, le + lna), valid

    def click_probs(self):
        return self._marginals()[0]

    def examination_probs(self):
        return self._marginals()[1]

    def _marginals(self):
        shape = self.batch_shape + (self.list_size,)
        K = self.list_size
        la, _ = self._terms("attraction")
        attraction = jnp.exp(jnp.broadcast_to(la, shape))
        examination = jnp.exp(
            jnp.broadcast_to(self._log_params["examination"], self.batch_shape + (K, K))
        )
        valid = self._valid()
        # Distribution over the rank of the last click so far (index 0..K).
        init = jnp.zeros(self.batch_shape + (K + 1,), attraction.dtype).at[..., 0].set(1.0)
        xs = (
            jnp.arange(K),
            jnp.moveaxis(attraction, -1, 0),
            jnp.moveaxis(examination, -2, 0),
            jnp.moveaxis(valid, -1, 0),
        )
        _, (probs, examined) = jax.lax.scan(_ubm_marginal_step, init, xs)
        return jnp.moveaxis(probs, 0, -1), jnp.moveaxis(examined, 0, -1)

    def sample(self, key, sample_shape=()):
        sample_shape = self._sample_shape(sample_shape)
        shape = self.batch_shape + (self.list_size,)
        K = self.list_size
        attraction = jnp.broadcast_to(self._prob("attraction"), shape)
        log_exam = self._log_params["examination"]
        valid = self._valid()
        u = uniform(key, sample_shape + shape, attraction.dtype)
        full_batch = sample_shape + self.batch_shape
        if log_exam.ndim == 2:
            exam_rows = jnp.exp(log_exam)  # [K, K]
        else:
            exam_rows = jnp.moveaxis(jnp.exp(jnp.broadcast_to(log_exam, self.batch_shape + (K, K))), -2, 0)
        xs = (
            jnp.arange(K, dtype=jnp.int32),
            jnp.moveaxis(u, -1, 0),
            jnp.moveaxis(jnp.broadcast_to(attraction, sample_shape + shape), -1, 0),
            jnp.moveaxis(jnp.broadcast_to(valid, sample_shape + shape), -1, 0),
            exam_rows,
        )
        _, clicks = jax.lax.scan(_ubm_sample_step, jnp.zeros(full_batch, jnp.int32), xs)
        return jnp.moveaxis(clicks, 0, -1)



# lax.scan bodies at module level: their trace and compilation are reused across calls, also outside jit
def _ubm_marginal_step(last_click, x):
    """One rank of the UBM marginals: the distribution over the rank of the last click so far."""
    k, attr, exam_row, is_valid = x
    K = last_click.shape[-1] - 1
    click_given_last = attr[..., None] * exam_row  # [..., K]
    click_given_last = jnp.where(is_valid[..., None], click_given_last, 0.0)
    joint = last_click[..., :K] * click_given_last
    p_click = jnp.sum(joint, axis=-1)
    p_examined = jnp.where(is_valid, jnp.sum(last_click[..., :K] * exam_row, axis=-1), 0.0)
    new = last_click.at[..., :K].add(-joint)
    new = new.at[..., k + 1].add(p_click)
    return new, (p_click, p_examined)


def _ubm_sample_step(previous, x):
    """One rank of UBM sampling: click with attraction x examination given the previous click's rank."""
    k, u_k, attr_k, valid_k, exam_row = x
    if exam_row.ndim == 1:
        exam = exam_row[previous]
    else:
        row = jnp.broadcast_to(exam_row, previous.shape + (exam_row.shape[-1],))
        exam = jnp.take_along_axis(row, previous[..., None], axis=-1)[..., 0]
    click = (u_k < attr_k * exam) & valid_k
    return jnp.where(click, k + 1, previous), click

MODELS = CLICK_MODELS  # the name earlier releases exported
