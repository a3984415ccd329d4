"""Two-stage counterfactual learners: a candidate generator and a ranker trained from clicks.

The deployed pipeline takes the candidate generator's top ``K2`` documents of the query's whole pool and
orders them by the ranker (:class:`TwoStagePipeline`). For training both stages are Plackett-Luce
policies over their scores, and the learners maximise the two-stage IPS estimate of the pipeline's value
(Gupta, Liao and de Rijke, ICTIR 2025), ``V̂ = sum_d rho_{c,r}(d) R̂(d)`` with ``R̂(d)`` the mean over the
query's sessions of ``c(d) / rho_0(d)`` (``rho_0``: the logging pipeline's joint exposure), by policy
gradients (:mod:`ultr.two_stage`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..options import option
from ..two_stage import credit_assigned_surrogate, deterministic_pipeline_scores, reinforce_surrogates
from .base import Learner, Need, Statistic, register_learner
from .weighting import ExposureSampling

GRADIENTS = ("credit-assigned", "reinforce")


class TwoStagePipeline(nnx.Module):
    """A candidate generator and a ranker, deployed deterministically: the generator's top ``K2``, ordered by
    the ranker. ``__call__(features, where)`` returns scores ``[..., n]`` whose order is that ranking."""

    def __init__(self, candidate_generator: nnx.Module, ranker: nnx.Module, candidates: int):
        self.candidate_generator = candidate_generator
        self.ranker = ranker
        self.candidates = candidates

    def stage_scores(self, features):
        return self.candidate_generator(features), self.ranker(features)

    def __call__(self, features, where=None):
        candidate_scores, ranker_scores = self.stage_scores(features)
        return deterministic_pipeline_scores(candidate_scores, ranker_scores, candidates=self.candidates,
                                             where=where)


class LoggingStage(nnx.Module):
    """One stage of the logging pipeline, fixed: its linear scores in the standardised feature space."""

    def __init__(self, weights: np.ndarray):
        self.weights = Statistic(jnp.asarray(weights, jnp.float32))

    def __call__(self, features):
        return features @ self.weights[...]


@dataclasses.dataclass(frozen=True)
class StageOptions(ExposureSampling):
    """Options of every two-stage learner (those of the ranker trained alone and of the top-1 method)."""

    candidates: int = option(100, "two-stage: candidates K2 the generator passes to the ranker",
                             check=lambda v: isinstance(v, int) and v >= 1, requirement="a positive integer")
    policy_temperature: float = option(1.0, "two-stage: Plackett-Luce temperature of both stages while training",
                                       check=lambda v: v > 0, requirement="positive")
    pipeline_samples: int = option(16, "two-stage: pipelines sampled per query and step for the policy gradients",
                                   check=lambda v: isinstance(v, int) and 2 <= v <= 4096,
                                   requirement="in 2..4096")
    reward_baseline: bool = option(True, "two-stage: subtract a baseline from the rewards (variance reduction)")
    exposure_clip: float = option(0.01, "two-stage: smallest logging exposure rho_0 in the IPS relevance c / rho_0 "
                                        "(bounds the weights at 1 / clip: less variance, some bias for rarely "
                                        "exposed documents)",
                                  check=lambda v: 0 < v < 1, requirement="in (0, 1)")


@dataclasses.dataclass(frozen=True)
class CandidateOptions(StageOptions):
    """Options of the learners that train the candidate generator by a choice of gradient."""

    candidate_gradient: str = option("credit-assigned", "two-stage: the candidate generator's policy gradient",
                                     choices=GRADIENTS)


@dataclasses.dataclass(frozen=True)
class TwoStageOptions(CandidateOptions):
    """Options of joint training."""

    alternate: int = option(1, "two-stage: steps given to one stage before the other (0: both every step)",
                            check=lambda v: isinstance(v, int) and v >= 0, requirement="a non-negative integer")


class _TwoStageBase(Learner):
    """Shared machinery: per-query IPS relevance from the clicks, the two stages, the policy gradients."""

    needs = frozenset({Need.CLICKS, Need.PROPENSITIES, Need.LOGGING_PROPENSITIES, Need.CANDIDATES})
    losses = ()
    aggregates_clicks = True
    lists_per_session_batch = 16
    min_steps = 2_000
    Options = TwoStageOptions
    #: which stages learn; the others are the logging pipeline's
    trains = ("candidates", "ranker")
    #: the examination curve the objective weights ranks by; "top-1" counts only the first rank
    objective = "examination"

    def __init__(self, ranker, list_size, loss=None, *, examination, candidates: int = 100,
                 policy_temperature: float = 1.0, pipeline_samples: int = 16, reward_baseline: bool = True,
                 candidate_gradient: str = "credit-assigned", alternate: int = 1, exposure_clip: float = 0.01,
                 exposure_samples: int = 10_000, logging_stages: dict | None = None, seed: int = 0):
        super().__init__(ranker, list_size, loss)
        self.sampling_seed = int(seed)  # the sampled pipelines of step t: fold_in(key(seed), t)
        if candidate_gradient not in GRADIENTS:
            raise ValueError(f"candidate_gradient: unknown {candidate_gradient!r}; choose {', '.join(GRADIENTS)}")
        theta = np.asarray(examination, np.float64)[:list_size]
        if self.objective == "top-1":
            theta = np.eye(len(theta))[0]
        self.examination = Statistic(jnp.asarray(theta, jnp.float32))
        self.temperature, self.samples, self.gradient = policy_temperature, pipeline_samples, candidate_gradient
        self.baseline, self.alternate = reward_baseline, alternate
        self.step = Statistic(jnp.zeros((), jnp.int32))
        generator = nnx.clone(ranker)
        stages = {"candidates": generator, "ranker": ranker}
        for stage in ("candidates", "ranker"):
            if stage not in self.trains:
                if logging_stages is None:
                    raise ValueError(f"{self.name} keeps the logging pipeline's {stage} stage: it needs "
                                     f"{Need.LOGGING_POLICY.what} ({Need.LOGGING_POLICY.supplied_by})")
                stages[stage] = LoggingStage(logging_stages[stage] * policy_temperature)  # its own logits at T
        self.ranker = TwoStagePipeline(stages["candidates"], stages["ranker"], candidates)

    @classmethod
    def check_loss(cls, loss):
        if loss is not None:
            raise ValueError(f"loss: the {cls.name} learner maximises the two-stage IPS estimate of the pipeline's "
                             "value by policy gradients and takes no ranking loss")
        return "two-stage-ips"

    @classmethod
    def build(cls, ranker, list_size, *, loss=None, options=None, propensities=None, num_features=None,
              seed=0, logging_stages=None):
        options = options if options is not None else cls.Options()
        if propensities is None or propensities.examination is None:
            raise ValueError(f"the {cls.name} learner needs {Need.PROPENSITIES.what}: give "
                             f"{Need.PROPENSITIES.supplied_by}")
        return cls(ranker, list_size, loss, examination=propensities.examination, logging_stages=logging_stages,
                   seed=seed, **dataclasses.asdict(options))

    def score(self, features, where=None):
        return self.ranker(features, where)

    def loss(self, features, batch):
        pipeline = self.ranker
        candidate_scores, ranker_scores = pipeline.stage_scores(features)
        trained = [s for s in ("candidates", "ranker") if s in self.trains]
        candidate_turn = ranker_turn = True
        if self.alternate and len(trained) == 2:  # alternating updates: one stage learns at a time
            ranker_turn = (self.step[...] // self.alternate) % 2 == 1
            candidate_turn = ~ranker_turn
        # the idle stage's scores carry no gradient (a select: a NaN there cannot leak into the other stage)
        candidate_scores = jnp.where(candidate_turn & ("candidates" in self.trains), candidate_scores,
                                     jax.lax.stop_gradient(candidate_scores))
        ranker_scores = jnp.where(ranker_turn & ("ranker" in self.trains), ranker_scores,
                                  jax.lax.stop_gradient(ranker_scores))
        candidate_logits = candidate_scores / self.temperature
        ranker_logits = ranker_scores / self.temperature
        key = jax.random.fold_in(jax.random.key(self.sampling_seed), self.step[...])
        relevance = jnp.where(batch.mask, batch.labels, 0.0)
        theta = self.examination[...]
        K2 = pipeline.candidates
        cand_surrogate, rank_surrogate, _ = reinforce_surrogates(
            key, candidate_logits, ranker_logits, relevance, theta, candidates=K2, samples=self.samples,
            where=batch.mask, baseline=self.baseline)
        if self.gradient == "credit-assigned":
            cand_surrogate = credit_assigned_surrogate(
                jax.random.fold_in(key, 1), candidate_logits, ranker_logits, relevance, theta, candidates=K2,
                samples=self.samples, where=batch.mask, baseline=self.baseline)
        objective = cand_surrogate + rank_surrogate
        valid = jnp.any(batch.mask, axis=-1)
        return -jnp.sum(jnp.where(valid, objective, 0.0)) / jnp.maximum(jnp.sum(valid), 1)

    def update_statistics(self, features, batch):
        self.step[...] = self.step[...] + 1


@register_learner
class TwoStage(_TwoStageBase):
    """Joint two-stage counterfactual learning to rank (Gupta, Liao and de Rijke, ICTIR 2025).

    Both stages are trained, alternating (``alternate`` steps each), to maximise the two-stage IPS estimate
    ``sum_d rho_{c,r}(d) R̂(d)``: the ranker by REINFORCE with a leave-one-out baseline, the candidate
    generator by the credit-assigned gradient of Kiyohara et al. (arXiv 2605.26385, 2026;
    ``candidate_gradient = credit-assigned``) or the paper's REINFORCE (``reinforce``). See
    :mod:`ultr.two_stage`.
    """

    name = "two-stage"


@register_learner
class TwoStageRanker(_TwoStageBase):
    """The ranker of a two-stage pipeline trained alone on the two-stage IPS objective, over the logging
    pipeline's candidate generator (fixed)."""

    name = "two-stage-ranker"
    needs = _TwoStageBase.needs | {Need.LOGGING_POLICY}
    trains = ("ranker",)
    Options = StageOptions


@register_learner
class TwoStageCandidates(_TwoStageBase):
    """The candidate generator trained alone on the two-stage IPS objective, in front of the logging
    pipeline's ranker (fixed)."""

    name = "two-stage-candidates"
    needs = _TwoStageBase.needs | {Need.LOGGING_POLICY}
    trains = ("candidates",)
    Options = CandidateOptions


@register_learner
class TwoStageTop1(_TwoStageBase):
    """The top-1 two-stage method: only the candidate generator is trained, for the click on the first
    result, with the logging pipeline's ranker fixed (after Ma et al., "Off-policy Learning in Two-stage
    Recommender Systems", WWW 2020): the objective's rank weights are ``(1, 0, ..., 0)``."""

    name = "two-stage-top1"
    needs = _TwoStageBase.needs | {Need.LOGGING_POLICY}
    trains = ("candidates",)
    objective = "top-1"
    Options = StageOptions

    def __init__(self, ranker, list_size, loss=None, **options):
        super().__init__(ranker, list_size, loss, candidate_gradient="reinforce", **options)
