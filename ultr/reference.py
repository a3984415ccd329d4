"""The reference tables of ``docs/reference.md``, generated from the registries.

Regenerate with ``python -m ultr.reference > docs/reference.md`` (a test checks
that the committed page equals this output, so the docs never drift from the code).
"""

from __future__ import annotations

import dataclasses

from click_models import CLICK_MODELS
from click_models.engine import ENGINES
from click_models.fitting import fitting_methods
from simulators.interventions import INTERVENTIONS
from simulators.policies import POLICIES
from simulators.registry import DATASETS

from .estimators import ESTIMATORS
from .learners import LEARNERS
from .losses import LOSSES
from .metrics import METRICS
from .optimizers import OPTIMIZERS
from .options import describe_default, flag_of
from .rankers import RANKERS


def _code(items) -> str:
    return ", ".join(f"`{i}`" for i in items) or "-"


def _learner_options(cls) -> str:
    parts = []
    for field in dataclasses.fields(cls.Options):
        parts.append(f"`{flag_of(field)}` ({describe_default(field.default)})")
    return ", ".join(parts) or "-"


def markdown() -> str:
    """The whole reference page."""
    sections = [
        "# Reference: everything registered",
        "",
        "Generated from the registries by `python -m ultr.reference > docs/reference.md`; the command line's "
        "choices and the validation of `ultr run` configs come from the same registries. To add an entry, see "
        "[contributing.md](contributing.md).",
        "",
        "## Click models (`--click-model`, `[simulation] click_model`)",
        "",
        CLICK_MODELS.markdown_table({
            "parameters": lambda e: _code(f"{n} ({k})" for n, k in e.value.parameter_kinds.items()),
            "fitted by (`ultr fit --method`)": lambda e: ", ".join(fitting_methods(e.value)),
        }),
        "",
        "## Logging policies (`--policy`, `[simulation] policies`)",
        "",
        POLICIES.markdown_table(),
        "",
        "## Interventions (`--intervention`, `[simulation] intervention`)",
        "",
        INTERVENTIONS.markdown_table({"intervention codes": lambda e: e.value.codes.format(k="k")}),
        "",
        "## Propensity estimators (`ultr propensity --estimator`, `ultr train --propensities`, `estimators`)",
        "",
        ESTIMATORS.markdown_table({"needs": lambda e: e.value.needs}),
        "",
        "## Learners (`ultr train --learner`, `learners`)",
        "",
        LEARNERS.markdown_table({
            "needs": lambda e: ", ".join(sorted(n.what for n in e.value.needs)),
            "losses (`--loss`)": lambda e: _code(e.value.losses) if e.value.takes_loss()
            else (f"fixed: `{e.value.losses[0]}`" if e.value.losses else "-"),
            "options": lambda e: _learner_options(e.value),
        }),
        "",
        "## Ranking losses (`--loss`)",
        "",
        LOSSES.markdown_table(),
        "",
        "## Metrics (`metrics`, `--metric`; with `@k` for a cutoff)",
        "",
        METRICS.markdown_table(),
        "",
        "## Rankers (`--ranker`)",
        "",
        RANKERS.markdown_table({"options": lambda e: _code("--" + o for o in e.value.options)}),
        "",
        "## Optimisers (`--optimizer`)",
        "",
        OPTIMIZERS.markdown_table({"uses `--weight-decay`": lambda e: "yes" if e.value.uses_weight_decay else "no"}),
        "",
        "## Datasets (`--data NAME`, `ultr datasets download NAME`)",
        "",
        DATASETS.markdown_table({"queries": lambda e: e.value.queries, "features": lambda e: str(e.value.features),
                                 "grades": lambda e: e.value.labels,
                                 "download": lambda e: "automatic" if e.value.url else "by hand (licence)"}),
        "",
        "`synthetic` (built in, no download) is a generated dataset: `synthetic:queries=Q,docs=D,features=F,seed=S`.",
        "",
        "## Engines (`--engine` of `ultr simulate`, `fit`, `propensity`, `run`, `baidu convert`)",
        "",
        ENGINES.markdown_table(),
        "",
        "See [scale.md](scale.md).",
        "",
    ]
    return "\n".join(sections)


if __name__ == "__main__":  # pragma: no cover
    print(markdown(), end="")
