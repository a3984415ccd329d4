"""The learner interface: what a counterfactual learner takes, needs and computes.

A learner is a ``flax.nnx`` module that holds a ranker (and any bias model)
and defines the loss of a batch as a thin wrapper over a pure function of
:mod:`ultr.losses`. Its class declares, for the command line, the configs and
the training loop:

* ``Options``: a dataclass of its hyperparameters (fields made with
  :func:`ultr.options.option`); they become ``ultr train`` flags and TOML keys;
* ``needs``: the inputs it cannot work without (:class:`Need`); an unmet need
  is an error naming the flag that supplies it;
* ``losses``: the ranking losses it accepts (the first is its default); a
  learner with one fixed loss takes no ``--loss``;
* ``has_bias_model``: whether ``--bias-learning-rate`` applies.

Adding a learner is one class plus ``@register_learner`` (see ``docs/contributing.md``).
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

import numpy as np
from flax import nnx

from click_models.registry import Registry

from ..losses import LOSSES

if TYPE_CHECKING:  # pragma: no cover
    from ..propensities import Propensities


class Need(enum.Enum):
    """An input a learner cannot work without, and where the user supplies it."""

    CLICKS = ("click logs", "--logs")
    LABELS = ("the relevance labels of the training split", "--data")
    PROPENSITIES = ("examination propensities per rank", "--propensities (oracle, an estimator or a FILE)")
    TRUST_BIAS = ("examination and trust-bias click probabilities per rank",
                  "--propensities (oracle, trust-bias or a FILE with epsilon_pos and epsilon_neg)")
    LOGGING_POLICY = ("the logging policy's ranker", "--logs simulated by ultr with a production or plackett-luce policy")
    CANDIDATES = ("the candidate set of each query", "--data with every candidate document")
    LOGGING_PROPENSITIES = ("each document's expected examination under the logging policy",
                            "--logs simulated by ultr with a production, plackett-luce or uniform policy and PBM "
                            "clicks")

    def __init__(self, what: str, supplied_by: str):
        self.what = what
        self.supplied_by = supplied_by


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A learner without hyperparameters of its own."""


class Statistic(nnx.Variable):
    """Parameters updated outside gradient descent (EM steps, PairD biases)."""


class Learner(nnx.Module, abc.ABC):
    """Base class of the counterfactual learners.

    Every learner has ``loss(features, batch) -> scalar`` (``features [B, K, F]``
    gathered for the batch's documents, in display order), optionally
    ``update_statistics(features, batch)`` for parameters fitted outside gradient
    descent, and ``propensities()`` (examination per rank normalised at rank 1,
    ``None`` when the learner does not estimate it).
    """

    name: ClassVar[str] = "learner"
    Options: ClassVar[type] = NoOptions
    needs: ClassVar[frozenset[Need]] = frozenset({Need.CLICKS})
    losses: ClassVar[tuple[str, ...]] = ("softmax",)
    #: why only those losses, for the error message
    loss_requirement: ClassVar[str] = ""
    has_bias_model: ClassVar[bool] = False
    #: trains on per-query IPS relevance (the clicks weighted by ``1 / rho`` and averaged over each query's
    #: sessions) instead of session batches; a learner may also offer it as its ``aggregate`` option
    aggregates_clicks: ClassVar[bool] = False
    #: when aggregating, labels are ``[B, L, 2 + 2K]``: the per-query means of ``c / rho``, ``theta / rho``,
    #: the clicks and the impressions at each rank (doubly robust) instead of ``c / rho`` alone
    aggregate_statistics: ClassVar[bool] = False
    trainable: ClassVar[bool] = True
    #: what its propensities() returns, for reports: "propensities" (examination), or another name
    estimates: ClassVar[str | None] = None

    def __init__(self, ranker: nnx.Module, list_size: int, loss: str | None = None):
        self.ranker = ranker
        self.list_size = list_size
        self.loss_kind = self.check_loss(loss)

    # ------------------------------------------------------------------ declarations
    @classmethod
    def check_loss(cls, loss: str | None) -> str:
        """The loss to use: the default, or ``loss`` when the learner accepts it."""
        if loss is None:
            if not cls.losses:
                raise ValueError(f"{cls.name} takes no ranking loss")
            return cls.losses[0]
        name = LOSSES.canonical(loss)
        if name not in cls.losses:
            if len(cls.losses) <= 1:
                raise ValueError(f"loss: the {cls.name} learner has a fixed loss and takes none")
            why = f" ({cls.loss_requirement})" if cls.loss_requirement else ""
            raise ValueError(f"loss: the {cls.name} learner accepts {', '.join(cls.losses)}, not {name}{why}")
        return name

    @classmethod
    def takes_loss(cls) -> bool:
        return len(cls.losses) > 1

    @classmethod
    def takes_propensities(cls) -> bool:
        return bool(cls.needs & {Need.PROPENSITIES, Need.TRUST_BIAS})

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls.Options))

    @classmethod
    def make_options(cls, values: dict[str, Any] | None = None) -> Any:
        """The learner's ``Options`` from a mapping; unknown keys are errors naming the learner."""
        values = dict(values or {})
        unknown = set(values) - set(cls.option_names())
        if unknown:
            known = ", ".join(cls.option_names()) or "none"
            raise ValueError(f"{', '.join(sorted(unknown))}: not an option of the {cls.name} learner "
                             f"(its options: {known})")
        from ..options import check_all

        options = cls.Options(**values)
        check_all(options)
        return options

    @classmethod
    def build(cls, ranker: nnx.Module, list_size: int, *, loss: str | None = None, options: Any = None,
              propensities: "Propensities | None" = None, num_features: int | None = None,
              seed: int = 0) -> "Learner":
        """The learner for a ranker, from its options and the resolved inputs it needs
        (``num_features``: the width of the feature vectors, for models beside the ranker; ``seed``: the
        training seed, for learners that sample during training)."""
        options = options if options is not None else cls.Options()
        return cls(ranker, list_size, loss, **dataclasses.asdict(options))

    # ------------------------------------------------------------------ training
    def __call__(self, features):
        return self.ranker(features)

    def score(self, features, where=None):
        """Scores ``[..., n]`` of query lists for evaluation (``where``: the real documents); the ranker's by
        default, a two-stage pipeline's deployed ranking for the two-stage learners."""
        return self(features)

    @abc.abstractmethod
    def loss(self, features, batch):
        """Mean loss of a batch; ``features [B, K, F]`` in display order."""

    def update_statistics(self, features, batch) -> None:
        return None

    @classmethod
    def aggregates(cls, options) -> bool:
        """Whether the learner, with these options, trains on per-query IPS relevance (``aggregates_clicks``)."""
        return cls.aggregates_clicks or bool(getattr(options, "aggregate", False))

    def begin_pass(self, epoch: int) -> None:
        """Called before each pass over the training batches (outside ``jit``)."""
        return None

    def propensities(self) -> np.ndarray | None:
        return None


LEARNERS: Registry[type[Learner]] = Registry("learner")


def register_learner(cls: type[Learner]) -> type[Learner]:
    """Class decorator: add a learner to :data:`LEARNERS` under its ``name``."""
    if not cls.name or cls.name == "learner":
        raise ValueError(f"{cls.__name__}: a learner needs a name")
    return LEARNERS.register(cls.name)(cls)


def describe_needs(cls: type[Learner]) -> str:
    return ", ".join(sorted(n.what for n in cls.needs)) or "nothing"


def iter_learners() -> Iterator[type[Learner]]:
    return iter(LEARNERS.values())
