"""The click simulator: a logging policy ranks, a click model clicks, sessions stream to Parquet.

Every session's randomness is derived from the seed and the session's index
(``fold_in(key(seed), index)``), so a log is identical whatever the chunk size.
The key implementation (:data:`GENERATORS`) is part of the log's identity: it is a
configuration field, recorded in ``simulation.json``. With ``threefry2x32`` (the
default) each session draws from its own key. XLA's ``rbg`` generators draw the bits of
a whole vmapped batch from the batch's first key, so with them sessions are drawn in
fixed blocks of :data:`RBG_BLOCK` aligned session indices, whatever the chunk.
Chunks are computed by jit-compiled code (one compilation: the last chunk is
padded) and written by a background thread while the next chunk is computed;
memory stays flat whatever the number of sessions.

Relevance to attraction (Ai et al., SIGIR 2018)::

    attraction(y) = eps_neg + (eps_pos - eps_neg) * (2^y - 1) / (2^y_max - 1)

examination at rank k: ``rho_k ^ eta`` with the DLA paper's ``rho`` or ``1/k``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import errno
import hashlib
import json
import math
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow.parquet as pq

from click_models import CLICK_MODELS
from click_models.engine import distributes, make_engine
from click_models.labels import attraction_from_labels, satisfaction_from_labels  # noqa: F401 (re-exported)
from click_models.logs import (
    atomic_path,
    atomic_write_json,
    file_sha256,
    sessions_to_table,
    staged_directory,
    write_manifest,
    writer_lock,
)
from click_models.storage import local_path

from .datasets import Dataset, RankingData, fingerprint
from .interventions import INTERVENTIONS
from .metadata import LogMetadata
from .policies import POLICIES, Policy, make_policy
from .toy import DLA_EXAMINATION

#: sessions per log at most: session indices are folded into the seed's key as 32-bit integers
MAX_SESSIONS = 2**32
#: key implementations a log can be drawn with (``jax.random.key(seed, impl=...)``): threefry2x32 (JAX's
#: default, the same bits on every backend), rbg and unsafe_rbg (XLA's RngBitGenerator: faster on CPU and GPU,
#: the same bits for a seed on one backend and JAX version)
GENERATORS = ("threefry2x32", "rbg", "unsafe_rbg")
#: sessions per block of the rbg generators: a block draws its bits from the key of its first session
RBG_BLOCK = 4096
#: Parquet bytes per shown document, measured (36 MiB per 1M sessions of 10), doubled for the disk check
BYTES_PER_SHOWN_DOCUMENT = 8

#: SimulationConfig fields that set click-model parameters: field -> parameter names
PARAMETER_OPTIONS = {
    "continuation": ("continuation",),
    "tau": ("tau1", "tau2", "tau3"),
    "trust_eps_pos": ("epsilon_pos",),
    "trust_eps_neg": ("epsilon_neg",),
}


@dataclasses.dataclass
class SimulationConfig:
    """Everything that defines a simulated click log (with the dataset and the seed).

    Attributes:
      click_model: a name of :data:`click_models.CLICK_MODELS`.
      list_size: top-K cutoff: documents shown per session.
      eta: severity of position bias, examination ``rho_k ** eta``.
      examination: ``"dla"`` (Ai et al. 2018), ``"inverse"`` (``1/k``) or a list of per-rank rho.
      eps_pos, eps_neg: attraction of the most and the least relevant grade.
      max_label: highest grade (default: the dataset's).
      continuation: DBN gamma (scalar) or DCM lambda per rank (default: the model's).
      tau: CCM (tau1, tau2, tau3) (default 0.8, 0.5, 0.9).
      trust_eps_pos, trust_eps_neg: trust-bias click probabilities per rank
        (default ``1`` and ``0.65 / k``).
      policies: logging policies; each session draws one uniformly (several
        policies give logs for intervention harvesting).
      production_fraction: share of training queries the production ranker learns from.
      temperature: Plackett-Luce temperature; oracle_noise: noisy-oracle noise scale.
      candidates: two-stage logging (``K2``): each session's candidate generator first draws this many
        candidates (the top ``K2`` of a Plackett-Luce sample over the policy's scores at
        ``candidate_temperature``), and the policy then ranks only them; the log gets a ``candidates``
        column. None: the policy ranks every document of the query.
      candidate_temperature: the candidate generator's Plackett-Luce temperature (default: ``temperature``).
      intervention: None, ``"randtopk"`` (shuffle the top ``intervention_k``; Joachims et al.
        2017) or ``"swap"`` (swap rank 1 with a uniformly drawn rank k; Wang et al. 2018).
      intervention_rate: share of sessions that get the intervention.
      query_sampling: ``"uniform"`` or ``"powerlaw"`` (``P(q) ~ rank^-exponent`` over a
        random order of the queries).
      generator: the random key implementation, one of :data:`GENERATORS` (part of the log's identity).
    """

    click_model: str = "pbm"
    list_size: int = 10
    eta: float = 1.0
    examination: str | list[float] = "dla"
    eps_pos: float = 1.0
    eps_neg: float = 0.1
    max_label: int | None = None
    continuation: float | list[float] | None = None
    tau: tuple[float, float, float] | None = None
    trust_eps_pos: list[float] | None = None
    trust_eps_neg: list[float] | None = None
    policies: tuple[str, ...] = ("production",)
    production_fraction: float = 0.01
    temperature: float = 1.0
    oracle_noise: float = 1.0
    candidates: int | None = None
    candidate_temperature: float | None = None
    intervention: str | None = None
    intervention_k: int | None = None
    intervention_rate: float = 1.0
    query_sampling: str = "uniform"
    powerlaw_exponent: float = 1.0
    generator: str = "threefry2x32"

    def validate(self) -> None:
        model = CLICK_MODELS.lookup(self.click_model, "click_model")
        self.click_model = model.name
        if self.list_size < 1:
            raise ValueError(f"list_size must be positive, got {self.list_size}")
        for name, ok, words in (
                ("eta", lambda v: v >= 0, "a finite non-negative number"),
                ("temperature", lambda v: v > 0, "a finite positive number"),
                ("production_fraction", lambda v: 0 < v <= 1, "in (0, 1]"),
                ("oracle_noise", lambda v: v >= 0, "a finite non-negative number"),
                ("powerlaw_exponent", lambda v: v > 0, "a finite positive number")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not ok(value):
                raise ValueError(f"{name} must be {words}, got {value!r}")
        if self.candidates is not None and (isinstance(self.candidates, bool) or not isinstance(self.candidates, int)
                                            or self.candidates < self.list_size):
            raise ValueError(f"candidates must be an integer of at least list_size ({self.list_size}): the ranker "
                             f"shows the top list_size of the candidates; got {self.candidates!r}")
        if self.candidate_temperature is not None:
            value = self.candidate_temperature
            if self.candidates is None:
                raise ValueError("candidate_temperature: only two-stage logging (candidates = K2) draws candidates")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not value > 0:
                raise ValueError(f"candidate_temperature must be a finite positive number, got {value!r}")
        if self.max_label is not None and (isinstance(self.max_label, bool) or not isinstance(self.max_label, int)
                                           or not 1 <= self.max_label <= 127):
            raise ValueError(f"max_label must be an integer grade in 1..127, got {self.max_label!r}")
        if self.eps_neg > self.eps_pos:
            raise ValueError(f"eps_neg ({self.eps_neg}) exceeds eps_pos ({self.eps_pos}): relevant documents would "
                             "attract less than irrelevant ones")
        if self.intervention_k is not None and self.intervention_k > self.list_size:
            raise ValueError(f"intervention_k ({self.intervention_k}) exceeds list_size ({self.list_size})")
        if not 0 <= self.eps_neg <= 1 or not 0 <= self.eps_pos <= 1:
            raise ValueError(f"eps_pos and eps_neg must lie in [0, 1], got {self.eps_pos}, {self.eps_neg}")
        if not self.policies:
            raise ValueError("policies: give at least one logging policy")
        if isinstance(self.policies, str):
            self.policies = tuple(p.strip() for p in self.policies.split(",") if p.strip())
        self.policies = tuple(POLICIES.canonical(p, "policies") for p in self.policies)
        if self.intervention is not None:
            self.intervention = INTERVENTIONS.canonical(self.intervention, "intervention")
        if self.intervention_k is not None:
            users = [name for name, cls in INTERVENTIONS.items() if cls.uses_k]
            if self.intervention is None or not INTERVENTIONS[self.intervention].uses_k:
                raise ValueError(f"intervention_k: the {self.intervention or 'absent'} intervention does not use it "
                                 f"(used by {', '.join(users)})")
        if not 0 <= self.intervention_rate <= 1:
            raise ValueError(f"intervention_rate must lie in [0, 1], got {self.intervention_rate}")
        if self.query_sampling not in ("uniform", "powerlaw"):
            raise ValueError(f"query_sampling: unknown {self.query_sampling!r}; choose uniform or powerlaw")
        if self.generator not in GENERATORS:
            raise ValueError(f"generator: unknown {self.generator!r}; choose {', '.join(GENERATORS)}")
        if isinstance(self.examination, str) and self.examination not in ("dla", "inverse"):
            raise ValueError(f"examination: unknown {self.examination!r}; choose dla, inverse or a list")
        for option, names in PARAMETER_OPTIONS.items():
            if getattr(self, option) is not None and not set(names) <= set(model.parameter_kinds):
                users = [n for n, cls in CLICK_MODELS.items() if set(names) <= set(cls.parameter_kinds)]
                raise ValueError(f"{option}: the {model.name} click model has no {' / '.join(names)} parameter "
                                 f"(used by {', '.join(users)})")

    # ------------------------------------------------------------------ per-rank parameters
    def rho(self) -> np.ndarray:
        K = self.list_size
        if isinstance(self.examination, str):
            if self.examination == "dla" and K <= len(DLA_EXAMINATION):
                return DLA_EXAMINATION[:K].copy()
            if self.examination == "dla":
                raise ValueError(f"examination 'dla' has 10 ranks; list_size is {K}: give a list or 'inverse'")
            return 1.0 / np.arange(1, K + 1)
        rho = np.asarray(self.examination, np.float64)
        if rho.shape != (K,) or np.any(~np.isfinite(rho)) or np.any((rho < 0) | (rho > 1)) or not rho[0] > 0:
            raise ValueError(f"examination must be {K} probabilities with a positive first rank (propensities are "
                             f"normalised at rank 1), got {[float(x) for x in np.ravel(self.examination)]}")
        return rho

    def rank_parameters(self) -> dict[str, np.ndarray]:
        """The per-rank and session parameters of the click model (documented in simulation.json):
        the model's :meth:`~click_models.ClickModel.simulation_defaults` for the examination
        curve ``rho_k ** eta``, overridden by the options that set them."""
        K = self.list_size
        model = CLICK_MODELS[self.click_model]
        params = {k: np.asarray(v, np.float64) for k, v in model.simulation_defaults(self.rho() ** self.eta).items()}
        for option, names in PARAMETER_OPTIONS.items():
            value = getattr(self, option)
            if value is None or not set(names) <= set(model.parameter_kinds):
                continue
            values = [value] if len(names) == 1 else list(value)
            if len(values) != len(names):
                raise ValueError(f"{option} needs {len(names)} numbers ({', '.join(names)}), got {value}")
            for name, item in zip(names, values):
                item = np.asarray(item, np.float64)
                if option.startswith("trust_eps") and item.ndim == 0:
                    item = np.full(K, float(item))
                params[name] = item
        for key, value in params.items():
            if np.any(~np.isfinite(value)) or np.any((value < 0) | (value > 1)):
                raise ValueError(f"{key} must lie in [0, 1], got {value.tolist()}")
        return params


#: config keys that name a field differently
KEY_ALIASES = {"policy": "policies"}


def simulation_field(key: str) -> str:
    """The SimulationConfig field of an option key (``-`` or ``_``, ``policy`` for ``policies``)."""
    field = key.replace("-", "_")
    return KEY_ALIASES.get(field, field)


def unused_simulation_reason(field: str, config: SimulationConfig) -> str | None:
    """Why the option ``field`` has no effect on ``config`` (None when it is used).

    Options whose default is not None (the policy options, ``intervention_rate``,
    ``powerlaw_exponent``) are only checked when given, so this is called on given keys.
    """
    policy_options = set().union(*(POLICIES[p].options for p in POLICIES))
    if field in policy_options:
        if not any(field in POLICIES[p].options for p in config.policies):
            users = [p for p in POLICIES if field in POLICIES[p].options]
            return (f"no logging policy of {', '.join(config.policies)} uses it "
                    f"(used by {', '.join(users)})")
    elif field == "intervention_rate" and config.intervention is None:
        return "there is no intervention (set intervention)"
    elif field == "powerlaw_exponent" and config.query_sampling != "powerlaw":
        return f"query_sampling is {config.query_sampling!r} (used with query_sampling = 'powerlaw')"
    return None


def simulation_config(values, *, name=lambda key: key, strict: bool = True) -> SimulationConfig:
    """A checked :class:`SimulationConfig` from option values (``ultr simulate`` flags or a TOML table).

    Keys are field names (``-`` or ``_``; ``policy`` for ``policies``); an unknown key or a
    bad value raises ``ValueError`` whose message starts with ``name(key)`` or the field.
    With ``strict``, a given key that has no effect (:func:`unused_simulation_reason`) is an error too.
    """
    fields = {f.name for f in dataclasses.fields(SimulationConfig)}
    out = {}
    for key, value in values.items():
        field = simulation_field(key)
        if field not in fields:
            raise ValueError(f"{name(key)}: unknown key {key!r}; known: {', '.join(sorted(fields))}")
        if field == "policies" and isinstance(value, str):
            value = tuple(p.strip() for p in value.split(",") if p.strip())
        elif field in ("policies", "tau") and isinstance(value, list):
            value = tuple(value)
        out[field] = value
    try:
        config = SimulationConfig(**out)
        config.validate()
        config.rank_parameters()
    except TypeError as error:
        raise ValueError(str(error)) from None
    if strict:
        for key in values:
            reason = unused_simulation_reason(simulation_field(key), config)
            if reason is not None:
                raise ValueError(f"{name(key)}: has no effect: {reason}")
    return config


def session_click_model(model, labels, shown, params: dict, max_label: int, eps_pos: float, eps_neg: float):
    """The click model (class or name) of one or more sessions from the labels shown ``[..., K]``."""
    return CLICK_MODELS.resolve(model).from_labels(labels, shown, params, max_label=max_label, eps_pos=eps_pos,
                                                   eps_neg=eps_neg)


#: per worker process: the compiled chunk function of each simulator sent to it (by the sender's identity)
_COMPILED: dict = {}


class Simulator:
    """Simulate click logs over the queries of one split (the training split by default)."""

    def __init__(self, data: Dataset | RankingData, config: SimulationConfig, seed: int = 0):
        config.validate()
        self.config, self.seed = config, seed
        split = data.train if isinstance(data, Dataset) else data
        self.max_label = config.max_label if config.max_label is not None else (
            data.max_label if isinstance(data, Dataset) else int(max(split.labels.max(), 1)))
        if self.max_label < 1:
            raise ValueError("max_label must be at least 1")
        if split.num_documents and int(split.labels.max()) > self.max_label:
            raise ValueError(f"max_label {self.max_label} is below the dataset's highest grade "
                             f"{int(split.labels.max())}")
        self.split = split
        padded = split.padded(with_features=False)
        self.query_ids = padded.query_ids
        self.doc_ids = padded.doc_ids
        self.labels = padded.labels
        self.list_sizes = padded.mask.sum(1)
        needs_features = any(POLICIES[p].needs_features for p in config.policies)
        padded_with_features = split.padded() if needs_features else padded
        policy_cache: dict[str, Policy] = {}
        self.policies: list[Policy] = []
        for index, name in enumerate(config.policies):
            # repeated production policies get different training samples (intervention harvesting)
            repeat = sum(1 for p in config.policies[:index] if p == name)
            key = f"{name}-{repeat}"
            if key not in policy_cache:
                policy_cache[key] = make_policy(
                    name, split, padded_with_features, seed=seed + 1000 * repeat,
                    fraction=config.production_fraction, temperature=config.temperature,
                    oracle_noise=config.oracle_noise)
            self.policies.append(policy_cache[key])
        self.rank_parameters = config.rank_parameters()
        Q = len(self.query_ids)
        if config.query_sampling == "uniform":
            weights = np.ones(Q)
        else:
            order = np.random.default_rng(seed).permutation(Q)
            weights = np.empty(Q)
            weights[order] = np.arange(1, Q + 1, dtype=np.float64) ** -config.powerlaw_exponent
        self.query_probabilities = weights / weights.sum()
        self._identity = uuid.uuid4().hex
        self._chunk_fn = self._build()

    def __getstate__(self):  # a Ray task gets the simulator without its compiled function, and compiles its own
        state = dict(self.__dict__)
        state.pop("_chunk_fn", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        identity = self._identity  # the tasks of one simulator share a worker's compiled function
        if identity not in _COMPILED:
            if len(_COMPILED) >= 4:  # keep the functions of a few simulators per worker process
                _COMPILED.pop(next(iter(_COMPILED)))
            _COMPILED[identity] = self._build()
        self._chunk_fn = _COMPILED[identity]

    # ------------------------------------------------------------------ the jit-compiled core
    def _build(self) -> Callable:
        cfg, K = self.config, self.config.list_size
        scores = jnp.asarray(np.stack([p.scores for p in self.policies]))  # [P, Q, L]
        temperatures = jnp.asarray([p.temperature for p in self.policies], jnp.float32)
        any_stochastic = any(p.stochastic for p in self.policies)
        L = scores.shape[-1]
        # deterministic top-K per policy and query (ties broken by position)
        fixed_order = jnp.asarray(np.stack([
            np.argsort(-p.scores, axis=1, kind="stable")[:, :K] if L >= K else
            np.pad(np.argsort(-p.scores, axis=1, kind="stable"), ((0, 0), (0, K - L)))
            for p in self.policies
        ]).astype(np.int32))
        labels = jnp.asarray(self.labels)
        doc_ids = jnp.asarray(self.doc_ids)
        list_sizes = jnp.asarray(self.list_sizes, jnp.int32)
        cdf = jnp.asarray(np.cumsum(self.query_probabilities), jnp.float32)
        params = {k: jnp.asarray(v, jnp.float32) for k, v in self.rank_parameters.items()}
        base_key = jax.random.key(self.seed, impl=cfg.generator)
        P = len(self.policies)
        intervention = INTERVENTIONS[cfg.intervention] if cfg.intervention is not None else None
        rate = cfg.intervention_rate
        shuffle_k = min(cfg.intervention_k or K, K)
        model, max_label = CLICK_MODELS[cfg.click_model], self.max_label
        eps_pos, eps_neg = cfg.eps_pos, cfg.eps_neg
        K2 = None if cfg.candidates is None else min(cfg.candidates, L)
        candidate_temperature = cfg.candidate_temperature or cfg.temperature

        def draw_candidates(key, policy_scores):
            """The two-stage logging policy's candidate set: top K2 of a Plackett-Luce sample (Gumbel-max)."""
            noisy = jnp.where(jnp.isfinite(policy_scores),
                              policy_scores / candidate_temperature + jax.random.gumbel(key, (L,)), -jnp.inf)
            _, candidates = jax.lax.top_k(noisy, K2)
            valid = jnp.isfinite(noisy[candidates])
            member = jnp.zeros(L, bool).at[candidates].set(valid)
            return candidates, valid, member

        def two_stage_order(key, policy, query):
            """Candidates drawn, then the policy's ranking of the candidates only (top K)."""
            candidates, valid, member = draw_candidates(jax.random.fold_in(key, 1), scores[policy, query])
            restricted = jnp.where(member, scores[policy, query], -jnp.inf)
            temperature = temperatures[policy]
            noisy = jnp.where(temperature > 0, restricted / jnp.maximum(temperature, 1e-6)
                              + jax.random.gumbel(key, (L,)), restricted)
            noisy = jnp.where(member, noisy, -jnp.inf)
            _, order = jax.lax.top_k(noisy, min(K, L))  # ties: the lower position first, as the stable sort
            return jnp.pad(order, (0, K - min(K, L))), candidates, valid

        def one_session(index):
            key = jax.random.fold_in(base_key, index)
            # one key per use, folded in where it is used: a session pays only for the draws its configuration makes
            k_query, k_policy, k_rank, k_intervene, k_click = (jax.random.fold_in(key, i) for i in range(5))
            query = jnp.minimum(jnp.searchsorted(cdf, jax.random.uniform(k_query), side="right"), len(cdf) - 1)
            policy = jax.random.randint(k_policy, (), 0, P) if P > 1 else jnp.int32(0)
            n_docs = list_sizes[query]
            if K2 is not None:
                order, candidates, candidates_valid = two_stage_order(k_rank, policy, query)
            elif any_stochastic:
                temperature = temperatures[policy]
                gumbel = jax.random.gumbel(k_rank, (L,))
                noisy = jnp.where(temperature > 0, scores[policy, query] / jnp.maximum(temperature, 1e-6) + gumbel,
                                  scores[policy, query])
                noisy = jnp.where(jnp.isfinite(scores[policy, query]), noisy, -jnp.inf)
                _, sampled = jax.lax.top_k(noisy, min(K, L))
                sampled = jnp.pad(sampled, (0, K - min(K, L)))
                order = jnp.where(temperature > 0, sampled, fixed_order[policy, query])
            else:
                order = fixed_order[policy, query]
            n_shown = jnp.minimum(n_docs, K)
            positions = jnp.arange(K)
            code = jnp.int32(0)
            if intervention is not None:
                k_apply, k_perm = jax.random.split(k_intervene)
                apply = jax.random.uniform(k_apply) < rate
                permutation, effect = intervention.permute(k_perm, n_shown, K, shuffle_k)
                permutation = jnp.where(apply, permutation, positions)
                code = jnp.where(apply, effect, 0)
                order = order[permutation]
            shown = positions < n_shown
            shown_labels = jnp.where(shown, labels[query, order], 0)
            shown_docs = jnp.where(shown, doc_ids[query, order], 0)
            session = model.from_labels(shown_labels, shown, params, max_label=max_label, eps_pos=eps_pos,
                                        eps_neg=eps_neg)
            clicks = session.sample(k_click)
            outputs = (query, shown_docs, clicks, shown, shown_labels.astype(jnp.int8),
                       session.examination_probs().astype(jnp.float32), policy.astype(jnp.int32),
                       code.astype(jnp.int32))
            if K2 is not None:
                outputs += (jnp.where(candidates_valid, doc_ids[query, candidates], 0), candidates_valid)
            return outputs

        if not self._drawn_in_blocks:
            return jax.jit(jax.vmap(one_session))

        def blocks(index):  # [blocks, RBG_BLOCK]: one vmapped batch per block, so a block's bits depend on it alone
            outputs = jax.lax.map(jax.vmap(one_session), index)
            return tuple(x.reshape((-1, *x.shape[2:])) for x in outputs)

        return jax.jit(blocks)

    @property
    def _drawn_in_blocks(self) -> bool:
        return self.config.generator != "threefry2x32"

    def simulate_chunk(self, start: int, size: int, padded_size: int | None = None) -> dict[str, np.ndarray]:
        """Sessions ``start .. start + size - 1`` as numpy arrays (padded_size: compiled batch size)."""
        padded_size = padded_size or size
        first, offset = start, 0
        if self._drawn_in_blocks:  # whole aligned blocks around the chunk, as many for every chunk of this padding
            first = start // RBG_BLOCK * RBG_BLOCK
            offset = start - first
            count = -(-(padded_size + RBG_BLOCK - 1) // RBG_BLOCK)
            index = jnp.arange(first, first + count * RBG_BLOCK, dtype=jnp.uint32).reshape(count, RBG_BLOCK)
        else:
            index = jnp.arange(start, start + padded_size, dtype=jnp.uint32)
        with jax.threefry_partitionable(True):  # the bits of a threefry log do not follow the user's global flag
            outputs = [np.asarray(x)[offset:offset + size] for x in self._chunk_fn(index)]
        query, docs, clicks, shown, labels, exam, policy, code = outputs[:8]
        extra = {}
        if self.config.candidates is not None:
            extra = {"candidates": outputs[8], "candidate_mask": outputs[9]}
        return extra | {
            "session_id": np.arange(start, start + size, dtype=np.int64),
            "query_id": self.query_ids[query],
            "doc_ids": docs,
            "clicks": clicks & shown,
            "mask": shown,
            "labels": labels,
            "examination": exam,
            "policy": policy,
            "intervention": code,
        }

    def metadata(self) -> LogMetadata:
        cfg = self.config
        codes = "always 0"
        if cfg.intervention is not None:
            intervention = INTERVENTIONS[cfg.intervention]
            codes = intervention.codes.format(k=min(cfg.intervention_k or cfg.list_size, cfg.list_size))
        return LogMetadata(
            dataset={"name": self.split.name, "split": "train", "queries": int(self.split.num_queries),
                     "documents": int(self.split.num_documents), "fingerprint": fingerprint(self.split)},
            config=dataclasses.asdict(cfg),
            seed=self.seed,
            max_label=self.max_label,
            policies=[p.name for p in self.policies],
            policy_models=[p.description() for p in self.policies],
            rank_parameters={k: np.asarray(v).tolist() for k, v in self.rank_parameters.items()},
            intervention_codes=codes,
        )

    def run(self, out_dir, num_sessions: int, chunk_size: int = 100_000, rows_per_file: int = 1_000_000,
            progress: bool = True, workers: int = 2, overwrite: bool = False, engine=None) -> dict:
        """Simulate ``num_sessions`` sessions into a click-log directory ``out_dir``.

        Sessions ``[i * rows_per_file, (i + 1) * rows_per_file)`` go to
        ``part-{i:05d}.parquet``; ``workers`` files are produced at a time. The log
        is built in a hidden staging directory beside ``out_dir`` and swapped in when
        complete, with ``simulation.json`` and, last, ``manifest.json`` (parts, rows,
        SHA-256): an interrupted run leaves no partial log, and with ``overwrite`` the
        old log stays whole until the new one replaces it. A run killed without cleaning up
        (``SIGKILL``, a lost machine) keeps its finished parts in the staging directory: the same
        command again (same data, configuration, seed, sizes) checks them by SHA-256 and simulates only
        the rest. A second writer of the same ``out_dir`` is refused. Returns a summary (sessions/s,
        CTR per rank, parts resumed), also written to ``simulation.json`` with the configuration.

        ``engine`` (:mod:`click_models.engine`; None or ``local``: this process) runs the parts elsewhere:
        with ``ray``, one Ray task per part writes it into the staging directory, which must then be on a
        file system every worker sees. Every session's randomness comes from its index, so the log's bytes are
        the same whatever the engine and its number of workers.
        """
        if num_sessions < 1:
            raise ValueError(f"num_sessions must be positive, got {num_sessions}")
        if num_sessions > MAX_SESSIONS:
            raise ValueError(f"{num_sessions:,} sessions: a log holds at most 2^32 = {MAX_SESSIONS:,} "
                             "(session indices seed the random streams); simulate several logs with other seeds")
        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        needed = num_sessions * self.config.list_size * BYTES_PER_SHOWN_DOCUMENT
        free = shutil.disk_usage(out_dir.parent).free
        if needed > free:
            raise OSError(errno.ENOSPC, f"{num_sessions:,} sessions need about {needed / 2**20:,.1f} MiB; "
                                        f"{out_dir.parent} has {free / 2**20:,.1f} MiB free")
        rows_per_file = max(1, rows_per_file)
        chunk_size = max(1, min(chunk_size, num_sessions, rows_per_file))
        identity = {"metadata": dataclasses.asdict(self.metadata()), "sessions": num_sessions,
                    "rows_per_file": rows_per_file, "chunk_size": chunk_size, "jax": jax.__version__}
        resume_key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
        with writer_lock(out_dir), staged_directory(out_dir, overwrite=overwrite, resume_key=resume_key) as stage:
            summary = self._run_into(stage, num_sessions, chunk_size, rows_per_file, progress, workers, engine)
            write_manifest(stage, {"sessions": num_sessions, "seed": self.seed}, digests=summary.pop("sha256"))
        return summary

    def _run_into(self, out_dir: Path, num_sessions: int, chunk_size: int, rows_per_file: int, progress: bool,
                  workers: int, engine=None) -> dict:
        from tqdm import tqdm

        meta = self.metadata()
        compile_started = time.perf_counter()
        self.simulate_chunk(0, 1, padded_size=chunk_size)  # compile once, outside the timing
        compile_seconds = time.perf_counter() - compile_started
        started = time.perf_counter()
        ranges = [(i, start, min(start + rows_per_file, num_sessions))
                  for i, start in enumerate(range(0, num_sessions, rows_per_file))]
        finished = {r[0]: done for r in ranges if (done := finished_part(out_dir, r)) is not None}
        todo = [r for r in ranges if r[0] not in finished]
        bar = tqdm(total=num_sessions, unit="sessions", unit_scale=True, disable=not progress, desc="simulate",
                   initial=sum(done[4] for done in finished.values()))
        owned = isinstance(engine, str)  # an engine made here from its name is closed here
        engine = make_engine(engine or "local")
        try:
            if distributes(engine):
                computed = engine.map(_simulate_part, todo, shared={"simulator": self, "out_dir": out_dir,
                                                                     "chunk_size": chunk_size},
                                     progress=lambda result: bar.update(result[4]))
            else:
                computed = self._run_threads(out_dir, todo, chunk_size, workers, bar) if todo else []
        finally:
            bar.close()
            if owned:
                engine.close()
        finished.update((r[0], result) for r, result in zip(todo, computed))
        results = [finished[r[0]] for r in ranges]
        # the records of finished parts, and the temporary file of a task whose worker died (or of a killed run)
        for leftover in [*out_dir.glob(".part-*.json"), *out_dir.glob(".*.tmp")]:
            leftover.unlink(missing_ok=True)
        elapsed = time.perf_counter() - started
        clicks_per_rank = sum(r[1] for r in results)
        shown_per_rank = sum(r[2] for r in results)
        summary = {
            "sessions": num_sessions,
            "seconds": round(elapsed, 3),
            "compile_seconds": round(compile_seconds, 3),
            "sessions_per_second": sum(r[2] - r[1] for r in todo) / elapsed if elapsed > 0 and todo else None,
            "ctr_per_rank": (clicks_per_rank / np.maximum(shown_per_rank, 1)).tolist(),
            "files": [r[0].name for r in results],
            "resumed_parts": len(ranges) - len(todo),
            "sha256": {r[0].name: r[3] for r in results},
        }
        if distributes(engine):
            summary["engine"] = engine.describe()
        dataclasses.replace(meta, summary=summary).write(out_dir)
        return summary

    def _run_threads(self, out_dir: Path, ranges: list, chunk_size: int, workers: int, bar) -> list:
        """The local engine: ``workers`` parts at a time in threads, each with its own writer thread."""
        workers = max(1, min(workers, len(ranges)))
        # one long-lived writer thread per worker: fresh threads per file would each grow a malloc arena
        io_pools = [concurrent.futures.ThreadPoolExecutor(max_workers=1) for _ in range(workers)]
        free_pools = list(io_pools)
        pools_lock = threading.Lock()
        cancelled = threading.Event()

        def produce(item):
            with pools_lock:
                io = free_pools.pop()
            try:
                return write_part(self, out_dir, item, chunk_size, io=io, on_chunk=bar.update, cancelled=cancelled)
            finally:
                with pools_lock:
                    free_pools.append(io)

        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(produce, r) for r in ranges]
                try:
                    return [f.result() for f in futures]
                except BaseException:
                    cancelled.set()  # workers stop at their next chunk instead of finishing the whole log
                    for future in futures:
                        future.cancel()
                    raise
        finally:
            for io in io_pools:
                io.shutdown(wait=True)


def write_part(simulator: Simulator, out_dir: Path, item: tuple[int, int, int], chunk_size: int, *, io=None,
               on_chunk=None, cancelled: threading.Event | None = None) -> tuple:
    """Simulate sessions ``first .. stop - 1`` of ``item = (file_index, first, stop)`` into
    ``out_dir/part-{file_index:05d}.parquet`` (atomically), chunk by chunk; the encoding of one chunk (on the
    ``io`` thread) overlaps the simulation of the next. Returns ``(path, clicks [K], shown [K], sha256,
    sessions)``."""
    file_index, first, stop = item
    K = simulator.config.list_size
    clicks, shown = np.zeros(K), np.zeros(K)
    final = Path(out_dir) / f"part-{file_index:05d}.parquet"
    state = {"writer": None}
    own_io = io is None
    io = concurrent.futures.ThreadPoolExecutor(max_workers=1) if own_io else io

    def write(arrays, size, tmp):
        # encoding and writing (pyarrow, GIL released) overlaps the next chunk's simulation
        table = sessions_to_table(
            arrays["session_id"], arrays["query_id"], arrays["doc_ids"], arrays["clicks"],
            arrays["mask"], labels=arrays["labels"], examination=arrays["examination"],
            policy=arrays["policy"], intervention=arrays["intervention"], with_positions=False,
            candidates=arrays.get("candidates"), candidate_mask=arrays.get("candidate_mask"))
        if state["writer"] is None:
            state["writer"] = pq.ParquetWriter(tmp, table.schema, compression="snappy", use_dictionary=False)
        state["writer"].write_table(table)
        if on_chunk is not None:
            on_chunk(size)

    try:
        with atomic_path(final) as tmp:
            try:
                pending = None
                for start in range(first, stop, chunk_size):
                    if cancelled is not None and cancelled.is_set():  # the run failed elsewhere: stop early
                        raise RuntimeError("simulation cancelled")
                    size = min(chunk_size, stop - start)
                    arrays = simulator.simulate_chunk(start, size, padded_size=chunk_size)
                    clicks += arrays["clicks"].sum(0)
                    shown += arrays["mask"].sum(0)
                    if pending is not None:
                        pending.result()
                    pending = io.submit(write, arrays, size, tmp)
                if pending is not None:
                    pending.result()
            finally:
                if state["writer"] is not None:
                    state["writer"].close()
            digest = file_sha256(tmp)  # while the other worker simulates: the manifest needs no re-read
        # what a resumed run needs of a finished part, written once the part is in place
        atomic_write_json({"sha256": digest, "clicks": clicks.tolist(), "shown": shown.tolist(),
                           "sessions": stop - first}, Path(out_dir) / f".part-{file_index:05d}.json")
    finally:
        if own_io:
            io.shutdown(wait=True)
    return final, clicks, shown, digest, stop - first


def finished_part(out_dir: Path, item: tuple[int, int, int]) -> tuple | None:
    """The result of :func:`write_part` for a part an interrupted run finished (its bytes checked against the
    SHA-256 it recorded), or None."""
    file_index, first, stop = item
    part, sidecar = Path(out_dir) / f"part-{file_index:05d}.parquet", Path(out_dir) / f".part-{file_index:05d}.json"
    if not (part.is_file() and sidecar.is_file()):
        return None
    try:
        record = json.loads(sidecar.read_text())
        if record["sessions"] != stop - first or file_sha256(part) != record["sha256"]:
            return None
        return part, np.asarray(record["clicks"]), np.asarray(record["shown"]), record["sha256"], stop - first
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _simulate_part(item, *, simulator: Simulator, out_dir: Path, chunk_size: int) -> tuple:
    """One engine task: a part of the log (see :func:`write_part`)."""
    return write_part(simulator, out_dir, item, chunk_size)
