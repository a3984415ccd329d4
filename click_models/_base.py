"""Shared machinery of the click models.

A click model is a distribution over binary click vectors ``C = (C_1, ..., C_K)``
given a batch of rankings. Each model is a frozen JAX pytree that stores every
probability parameter ``p`` as the pair ``(log p, log (1 - p))``. Keeping the
complement as its own leaf has two uses:

* every probability is evaluated in log space, so parameters of exactly 0 or 1
  give ``-inf`` terms instead of ``NaN``;
* the log-likelihood is a polynomial in the ``p`` and ``1 - p`` leaves, so by
  Fisher's identity its gradient with respect to ``log p`` is the posterior
  expected number of times ``p`` was "used" (the E-step of EM, see
  :mod:`click_models.fitting`).

Parameter kinds (shapes, with ``...`` the batch shape and ``K`` the list size):

* ``document``: ``[..., K]``, one value per displayed document;
* ``rank``: ``[K]`` or ``[..., K]``, one value per rank;
* ``rank_rank``: ``[K, K]`` or ``[..., K, K]`` (UBM: rank x rank of previous click);
* ``session``: scalar or ``[...]``, one value per session.

Masked positions (``mask == False``) never click and contribute nothing: for
models with a sequential browsing state they are skipped as if absent.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ._random import uniform

Array = jax.Array

DOCUMENT = "document"
RANK = "rank"
RANK_RANK = "rank_rank"
SESSION = "session"


def log_add(a: Array, b: Array) -> Array:
    """``log(exp(a) + exp(b))`` that stays NaN-free (values and gradients) at ``-inf``."""
    m = jnp.maximum(a, b)
    finite = jnp.isfinite(m)
    m_safe = jnp.where(finite, m, 0.0)
    s = jnp.exp(a - m_safe) + jnp.exp(b - m_safe)
    s_safe = jnp.where(finite, s, 1.0)
    return jnp.where(finite, m_safe + jnp.log(s_safe), m)


def _safe_log(x: Array) -> Array:
    """``log(x)`` for ``x`` in [0, 1] with a finite gradient at 0."""
    positive = x > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, x, 1.0)), -jnp.inf)


def _safe_log1m(x: Array) -> Array:
    """``log(1 - x)`` for ``x`` in [0, 1] with a finite gradient at 1."""
    below_one = x < 1
    return jnp.where(below_one, jnp.log1p(-jnp.where(below_one, x, 0.0)), -jnp.inf)


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _as_probability(name: str, value: Any) -> Array:
    """Convert ``value`` to a float array and check it is a probability."""
    if isinstance(value, jax.core.Tracer):
        return value if jnp.issubdtype(value.dtype, jnp.floating) else value.astype(jnp.result_type(float))
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError(f"{name} must be an array of probabilities, got {type(value).__name__}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(
            f"{name} must lie in [0, 1]; got values in [{array.min():.6g}, {array.max():.6g}]"
        )
    return jnp.asarray(array, dtype=jnp.result_type(float) if array.dtype == np.float64 else array.dtype)


class ClickModel(abc.ABC):
    """Base class: a batch of click distributions over ``K`` positions.

    Subclasses declare ``parameter_kinds`` (name -> kind) and implement
    ``_log_conditionals`` (and optionally faster closed forms).
    """

    parameter_kinds: ClassVar[dict[str, str]] = {}
    name: ClassVar[str] = ""
    #: the document parameter that a relevance label drives (attraction; relevance for trust bias)
    relevance_parameter: ClassVar[str] = "attraction"
    #: fitting by EM on aggregated cells: "rank" (PBM), "previous_click" (UBM), or None (generic E-step)
    cell_em: ClassVar[str | None] = None
    #: closed-form counting estimator: "first_click" (cascade), "last_click" (SDBN, DCM), or None
    counting_rule: ClassVar[str | None] = None

    @classmethod
    def simulation_defaults(cls, examination: np.ndarray) -> dict[str, np.ndarray]:
        """Rank and session parameters a simulation uses unless told otherwise.

        ``examination`` ``[K]`` is the simulation's examination curve (``rho_k ** eta``);
        models without a per-rank examination parameter ignore it.
        """
        del examination
        return {}

    @classmethod
    def document_parameters_from_labels(cls, labels, max_label: int, eps_pos: float, eps_neg: float) -> dict:
        """Document parameters ``[..., K]`` from graded relevance labels (see :mod:`click_models.labels`)."""
        from .labels import attraction_from_labels, satisfaction_from_labels

        out = {}
        for name, kind in cls.parameter_kinds.items():
            if kind != DOCUMENT:
                continue
            if name == "satisfaction":
                out[name] = satisfaction_from_labels(labels, max_label)
            else:
                out[name] = attraction_from_labels(labels, max_label, eps_pos, eps_neg)
        return out

    @classmethod
    def from_labels(cls, labels, mask, rank_parameters: dict, *, max_label: int, eps_pos: float = 1.0,
                    eps_neg: float = 0.1) -> "ClickModel":
        """The click model of sessions showing documents with relevance ``labels`` ``[..., K]``.

        Document parameters come from the labels (:meth:`document_parameters_from_labels`),
        the others from ``rank_parameters`` (e.g. :meth:`simulation_defaults`).
        """
        params = cls.document_parameters_from_labels(labels, max_label, eps_pos, eps_neg)
        for name, kind in cls.parameter_kinds.items():
            if kind == DOCUMENT:
                continue
            if name not in rank_parameters:
                raise ValueError(f"{cls.__name__}: rank_parameters lacks {name!r}")
            params[name] = rank_parameters[name]
        return cls(**params, mask=mask)

    _log_params: dict[str, Array]
    _log_complements: dict[str, Array]
    mask: Array | None
    #: the probabilities themselves where the model was built from them (or from logits): sampling reads
    #: these instead of exponentiating the logs (None for models built from log-probabilities)
    _probabilities: dict[str, Array] | None = None

    # ------------------------------------------------------------------ construction
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, cls._tree_flatten, cls._tree_unflatten)

    def _tree_flatten(self):
        return (self._log_params, self._log_complements, self.mask, self._probabilities), None

    @classmethod
    def _tree_unflatten(cls, aux, children):
        del aux
        obj = object.__new__(cls)
        obj._log_params, obj._log_complements, obj.mask, obj._probabilities = children
        return obj

    def _init_from_probabilities(self, mask: Any = None, **params: Any) -> None:
        log_params, log_complements, probabilities = {}, {}, {}
        for name in self.parameter_kinds:
            probability = _as_probability(f"{type(self).__name__}: {name}", params[name])
            probabilities[name] = probability
            log_params[name] = _safe_log(probability)
            log_complements[name] = _safe_log1m(probability)
        self._set(log_params, log_complements, mask)
        self._set_probabilities(probabilities)

    def _set_probabilities(self, probabilities: dict[str, Any]) -> None:
        dtype = next(iter(self._log_params.values())).dtype if self._log_params else jnp.result_type(float)
        self._probabilities = {k: jnp.asarray(v).astype(dtype) for k, v in probabilities.items()}

    def _set(self, log_params, log_complements, mask) -> None:
        missing = set(self.parameter_kinds) - set(log_params)
        if missing:
            raise TypeError(f"{type(self).__name__} is missing parameters {sorted(missing)}")
        # one float dtype for every parameter (float32 attraction with a Python-float continuation is
        # float64 under jax_enable_x64): lax.scan carries and the sums need them to agree
        values = [*log_params.values(), *log_complements.values()]
        dtype = jnp.result_type(*values) if values else jnp.result_type(float)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.result_type(float)
        self._log_params = {k: jnp.asarray(v).astype(dtype) for k, v in log_params.items()}
        self._log_complements = {k: jnp.asarray(v).astype(dtype) for k, v in log_complements.items()}
        if mask is not None:
            if _is_concrete(mask):
                mask_array = np.asarray(mask)
                if mask_array.dtype != np.bool_:
                    raise TypeError(f"{type(self).__name__}: mask must be boolean, got {mask_array.dtype}")
            mask = jnp.asarray(mask, dtype=bool)
        self.mask = mask
        self._check_shapes()

    @classmethod
    def from_log_probabilities(
        cls, log_params: dict[str, Array], log_complements: dict[str, Array], mask: Array | None = None
    ) -> "ClickModel":
        """Build a model from ``log p`` and ``log(1 - p)`` of every parameter.

        The two are taken as independent inputs (no check that they match);
        this is what makes the log-likelihood a polynomial for EM.
        """
        obj = object.__new__(cls)
        obj._set(log_params, log_complements, mask)
        return obj

    @classmethod
    def from_logits(cls, mask: Array | None = None, **logits: Array) -> "ClickModel":
        """Build a model from logits (``p = sigmoid(logit)``), exact in log space."""
        log_params = {k: jax.nn.log_sigmoid(jnp.asarray(v)) for k, v in logits.items()}
        log_complements = {k: jax.nn.log_sigmoid(-jnp.asarray(v)) for k, v in logits.items()}
        obj = cls.from_log_probabilities(log_params, log_complements, mask)
        obj._set_probabilities({k: jax.nn.sigmoid(jnp.asarray(v)) for k, v in logits.items()})
        return obj

    # ------------------------------------------------------------------ shapes
    def _check_shapes(self) -> None:
        name = type(self).__name__
        batch_shapes, list_sizes = [], []
        for param, kind in self.parameter_kinds.items():
            shape = tuple(self._log_params[param].shape)
            if tuple(self._log_complements[param].shape) != shape:
                raise ValueError(f"{name}: {param} and its complement differ in shape")
            if kind in (DOCUMENT, RANK):
                if len(shape) < 1:
                    raise ValueError(f"{name}: {param} must have shape [..., K], got a scalar")
                batch_shapes.append(shape[:-1])
                list_sizes.append((param, shape[-1]))
            elif kind == RANK_RANK:
                if len(shape) < 2 or shape[-1] != shape[-2]:
                    raise ValueError(f"{name}: {param} must have shape [..., K, K], got {list(shape)}")
                batch_shapes.append(shape[:-2])
                list_sizes.append((param, shape[-1]))
            else:
                batch_shapes.append(shape)
        sizes = {size for _, size in list_sizes}
        if len(sizes) > 1:
            detail = ", ".join(f"{p}: K={k}" for p, k in list_sizes)
            raise ValueError(f"{name}: parameters disagree on the list size K ({detail})")
        if self.mask is not None:
            batch_shapes.append(tuple(self.mask.shape[:-1]))
            if sizes and self.mask.shape[-1] not in sizes:
                raise ValueError(
                    f"{name}: mask has {self.mask.shape[-1]} positions, parameters have K={sizes.pop()}"
                )
        try:
            self._batch_shape = jnp.broadcast_shapes(*batch_shapes) if batch_shapes else ()
        except ValueError as error:
            shapes = {p: list(self._log_params[p].shape) for p in self.parameter_kinds}
            raise ValueError(f"{name}: parameter shapes do not broadcast: {shapes}") from error
        self._list_size = sizes.pop()

    @property
    def batch_shape(self) -> tuple[int, ...]:
        if not hasattr(self, "_batch_shape"):
            self._check_shapes()
        return self._batch_shape

    @property
    def list_size(self) -> int:
        if not hasattr(self, "_list_size"):
            self._check_shapes()
        return self._list_size

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.list_size,)

    # ------------------------------------------------------------------ parameters
    def __getattr__(self, item: str):
        # public probabilities, e.g. ``model.attraction``
        kinds = type(self).parameter_kinds
        if item in kinds and "_log_params" in self.__dict__:
            return jnp.exp(self.__dict__["_log_params"][item])
        raise AttributeError(f"{type(self).__name__} has no attribute {item!r}")

    def _prob(self, param: str) -> Array:
        """``p`` shaped like :meth:`_terms`: the stored probability where there is one, else ``exp(log p)``
        (sampling needs probabilities, and an ``exp`` of a ``log`` per element costs more than the draw)."""
        if self._probabilities is not None and param in self._probabilities:
            p = self._probabilities[param]
        else:
            p = jnp.exp(self._log_params[param])
        return p[..., None] if self.parameter_kinds[param] == SESSION else p

    def _terms(self, param: str) -> tuple[Array, Array]:
        """``(log p, log(1-p))`` shaped to broadcast with ``batch + [K]``."""
        lp, lq = self._log_params[param], self._log_complements[param]
        if self.parameter_kinds[param] == SESSION:
            lp, lq = lp[..., None], lq[..., None]
        return lp, lq

    def _valid(self) -> Array:
        shape = self.batch_shape + (self.list_size,)
        if self.mask is None:
            return jnp.ones(shape, dtype=bool)
        return jnp.broadcast_to(self.mask, shape)

    def _prepare_clicks(self, clicks: Any) -> Array:
        clicks = jnp.asarray(clicks)
        if clicks.ndim == 0 or clicks.shape[-1] != self.list_size:
            raise ValueError(
                f"{type(self).__name__}: clicks must have shape [..., {self.list_size}], got {list(clicks.shape)}"
            )
        if clicks.dtype != jnp.bool_:
            clicks = clicks != 0
        return clicks

    def _sample_shape(self, sample_shape) -> tuple[int, ...]:
        if isinstance(sample_shape, int):
            return (sample_shape,)
        return tuple(sample_shape)

    # ------------------------------------------------------------------ public API
    @abc.abstractmethod
    def sample(self, key: Array, sample_shape: int | tuple[int, ...] = ()) -> Array:
        """Draw click vectors: bool ``sample_shape + batch_shape + [K]``."""

    def log_prob(self, clicks: Array) -> Array:
        """Exact session log-likelihood ``log P(C = clicks)``, shape ``clicks.shape[:-1]``."""
        clicks = self._prepare_clicks(clicks)
        log_p1, log_p0, valid = self._log_conditionals(clicks)
        clicks = clicks & valid
        terms = jnp.where(clicks, log_p1, log_p0)
        return jnp.sum(jnp.where(valid, terms, 0.0), axis=-1)

    def conditional_click_probs(self, clicks: Array) -> Array:
        """``P(C_k = 1 | C_<k = clicks_<k)``, shape ``clicks.shape`` broadcast with the batch.

        Where the history ``clicks_<k`` itself has probability 0 the conditional
        is undefined and reported as 0.
        """
        log_p1, _, valid = self._log_conditionals(self._prepare_clicks(clicks))
        return jnp.where(valid, jnp.exp(log_p1), 0.0)

    @abc.abstractmethod
    def click_probs(self) -> Array:
        """Marginal click probabilities ``P(C_k = 1)``, shape ``batch_shape + [K]``."""

    @abc.abstractmethod
    def examination_probs(self) -> Array:
        """Marginal examination probabilities ``P(E_k = 1)``, shape ``batch_shape + [K]``
        (0 at masked positions)."""

    @abc.abstractmethod
    def _log_conditionals(self, clicks: Array) -> tuple[Array, Array, Array]:
        """Return ``log P(C_k=1 | C_<k)``, ``log P(C_k=0 | C_<k)`` and the validity mask."""

    def __repr__(self) -> str:
        params = ", ".join(
            f"{name}={list(self._log_params[name].shape)}" for name in self.parameter_kinds
        )
        return f"{type(self).__name__}({params}, batch_shape={self.batch_shape}, K={self.list_size})"


class IndependentClickModel(ClickModel):
    """Models where clicks are independent given the ranking (PBM, trust bias)."""

    @abc.abstractmethod
    def _log_click(self) -> tuple[Array, Array]:
        """``(log P(C_k=1), log P(C_k=0))`` as polynomials of the parameters."""

    def _log_conditionals(self, clicks):
        log_p1, log_p0 = self._log_click()
        shape = jnp.broadcast_shapes(clicks.shape, self.batch_shape + (self.list_size,))
        valid = jnp.broadcast_to(self._valid(), shape)
        return jnp.broadcast_to(log_p1, shape), jnp.broadcast_to(log_p0, shape), valid

    def click_probs(self):
        log_p1, _ = self._log_click()
        shape = self.batch_shape + (self.list_size,)
        return jnp.where(self._valid(), jnp.exp(jnp.broadcast_to(log_p1, shape)), 0.0)

    def examination_probs(self):
        log_examination, _ = self._terms("examination")
        shape = self.batch_shape + (self.list_size,)
        return jnp.where(self._valid(), jnp.exp(jnp.broadcast_to(log_examination, shape)), 0.0)

    def _sampling_click_probs(self) -> Array:
        """``P(C_k = 1)`` for sampling (subclasses compute it from probabilities, without logs)."""
        return self.click_probs()

    def sample(self, key, sample_shape=()):
        sample_shape = self._sample_shape(sample_shape)
        shape = self.batch_shape + (self.list_size,)
        probs = jnp.where(self._valid(), jnp.broadcast_to(self._sampling_click_probs(), shape), 0.0)
        u = uniform(key, sample_shape + probs.shape, dtype=probs.dtype)
        return u < probs


def _chain_step(carry, x):
    """One position of the forward pass of a cascade-family model (module level, so that ``lax.scan``
    reuses its trace and compilation across calls, also outside ``jit``)."""
    examined, not_examined = carry
    click, is_valid, attr, not_attr, cont_click, stop_click, cont_skip, stop_skip = x
    history = log_add(examined, not_examined)
    # After an impossible history (probability 0) the conditional is
    # undefined; report "no click" instead of NaN.
    possible = history > -jnp.inf
    history = jnp.where(possible, history, 0.0)
    log_p1 = jnp.where(possible, examined + attr - history, -jnp.inf)
    log_p0 = jnp.where(possible, log_add(not_examined, examined + not_attr) - history, 0.0)
    next_click = (examined + attr + cont_click, examined + attr + stop_click)
    next_skip = (
        examined + not_attr + cont_skip,
        log_add(not_examined, examined + not_attr + stop_skip),
    )
    new_examined = jnp.where(click, next_click[0], next_skip[0])
    new_not_examined = jnp.where(click, next_click[1], next_skip[1])
    new_examined = jnp.where(is_valid, new_examined, examined)
    new_not_examined = jnp.where(is_valid, new_not_examined, not_examined)
    return (new_examined, new_not_examined), (log_p1, log_p0)


class ChainClickModel(ClickModel):
    """Cascade-family models: the user scans top-down and may stop.

    The browsing state is ``E_k`` (position ``k`` examined). Examined documents
    are clicked with the attraction probability; after a click the user goes on
    with probability ``cont_click``, after an examined non-click with
    ``cont_skip``. Subclasses return the logs of these probabilities *and* of
    their complements as polynomials of the parameters (``_chain_terms``).
    """

    @abc.abstractmethod
    def _chain_terms(self) -> dict[str, Array]:
        """Log-probabilities shaped ``[..., K]``: keys ``attr``, ``not_attr``,
        ``cont_click``, ``stop_click``, ``cont_skip``, ``stop_skip``."""

    def _forward(self, clicks: Array):
        terms = self._chain_terms()
        shape = jnp.broadcast_shapes(clicks.shape, self.batch_shape + (self.list_size,))
        valid = jnp.broadcast_to(self._valid(), shape)
        clicks = jnp.broadcast_to(clicks, shape) & valid
        order = ["attr", "not_attr", "cont_click", "stop_click", "cont_skip", "stop_skip"]
        xs = [jnp.moveaxis(jnp.broadcast_to(terms[name], shape), -1, 0) for name in order]
        xs = [jnp.moveaxis(clicks, -1, 0), jnp.moveaxis(valid, -1, 0), *xs]
        dtype = xs[2].dtype
        batch = shape[:-1]
        # log P(E_k = 1, C_<k) and log P(E_k = 0, C_<k); position 1 is always examined.
        init = (jnp.zeros(batch, dtype), jnp.full(batch, -jnp.inf, dtype))

        (examined, not_examined), (log_p1, log_p0) = jax.lax.scan(_chain_step, init, xs)
        log_p1 = jnp.moveaxis(log_p1, 0, -1)
        log_p0 = jnp.moveaxis(log_p0, 0, -1)
        return log_p1, log_p0, valid, log_add(examined, not_examined)

    def _log_conditionals(self, clicks):
        log_p1, log_p0, valid, _ = self._forward(clicks)
        return log_p1, log_p0, valid

    def log_prob(self, clicks):
        # The forward total is the polynomial P(C) itself: this keeps EM gradients exact.
        *_, total = self._forward(self._prepare_clicks(clicks))
        return total

    def click_probs(self):
        terms = self._chain_terms()
        shape = self.batch_shape + (self.list_size,)
        attr = jnp.broadcast_to(terms["attr"], shape)
        return jnp.where(self._valid(), jnp.exp(self._log_examination(terms) + attr), 0.0)

    def examination_probs(self):
        return jnp.where(self._valid(), jnp.exp(self._log_examination(self._chain_terms())), 0.0)

    def _log_examination(self, terms):
        shape = self.batch_shape + (self.list_size,)
        valid = self._valid()
        go_on = log_add(terms["attr"] + terms["cont_click"], terms["not_attr"] + terms["cont_skip"])
        go_on = jnp.where(valid, jnp.broadcast_to(go_on, shape), 0.0)
        # exclusive cumulative sum (shifted, so that -inf terms never meet -inf)
        return jnp.concatenate([jnp.zeros_like(go_on[..., :1]), jnp.cumsum(go_on[..., :-1], axis=-1)], axis=-1)

    def _chain_probabilities(self) -> tuple[Array, Array, Array]:
        """``(attr, cont_click, cont_skip)`` as probabilities, for sampling (subclasses skip the logs)."""
        terms = self._chain_terms()
        return tuple(jnp.exp(terms[name]) for name in ("attr", "cont_click", "cont_skip"))

    def sample(self, key, sample_shape=()):
        sample_shape = self._sample_shape(sample_shape)
        shape = self.batch_shape + (self.list_size,)
        attr, cont_click, cont_skip = (jnp.broadcast_to(p, shape) for p in self._chain_probabilities())
        # One uniform per position decides both the click and whether the user goes on: given
        # u < attr, u / attr is again uniform, and given u >= attr, (u - attr) / (1 - attr) is.
        u = uniform(key, sample_shape + shape, attr.dtype)
        attracted = u < attr
        # (a certain continuation is kept exact rather than left to rounding of attr + (1 - attr))
        goes_on_after_skip = (u - attr < (1.0 - attr) * cont_skip) | (cont_skip >= 1.0)
        goes_on = jnp.where(attracted, u < attr * cont_click, goes_on_after_skip)
        valid = self._valid()
        attracted = attracted & valid
        goes_on = goes_on | ~valid
        # E_k = 1 iff the user went on at every position above k.
        stops_above = jnp.cumsum(~goes_on, axis=-1, dtype=jnp.int32) - (~goes_on).astype(jnp.int32)
        return attracted & (stops_above == 0)


def enumerate_click_vectors(list_size: int) -> np.ndarray:
    """All ``2^K`` click vectors, bool ``[2^K, K]`` (for tests and exact sums)."""
    codes = np.arange(2**list_size)[:, None]
    return ((codes >> np.arange(list_size)[None, :]) & 1).astype(bool)


