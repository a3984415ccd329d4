"""Plots (seaborn on matplotlib): every figure ultr draws, in one module.

Figures are built as ``matplotlib.figure.Figure`` objects and saved directly:
no pyplot, no backend switch and no theme set at import, so importing ultr
changes no global plotting state. The theme applies inside each function only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

THEME = "whitegrid"


def _figure(size=(7, 4)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.add_subplot()


def plot_estimate(result, truth: np.ndarray | None, path) -> None:
    """Estimated examination curve (with its confidence band) against the true one, to a PNG."""
    import seaborn as sns

    with sns.axes_style(THEME):
        ranks = np.arange(1, len(result.examination) + 1)
        frame = pd.DataFrame({"rank": ranks, "examination": result.examination, "curve": result.estimator})
        if truth is not None:
            frame = pd.concat([frame, pd.DataFrame({"rank": ranks, "examination": truth[: len(ranks)],
                                                    "curve": "true"})])
        fig, ax = _figure((6, 4))
        sns.lineplot(data=frame, x="rank", y="examination", hue="curve", style="curve", markers=True, ax=ax)
        if result.ci_low is not None:
            ax.fill_between(ranks, result.ci_low, result.ci_high, alpha=0.2)
        ax.set(xlabel="rank", ylabel="examination (normalised at rank 1)", xticks=ranks)
        fig.tight_layout()
        fig.savefig(path, dpi=120)


def plot_results(out: Path, frame: pd.DataFrame, propensities: list[dict], metric: str, axes: list[str],
                 truth: list | None = None) -> list[Path]:
    """The plots of an experiment (``ultr run``): metric per learner, against sessions, propensities."""
    import seaborn as sns

    written = []
    with sns.axes_style(THEME):
        fig, ax = _figure()
        hue = axes[0] if axes else None
        sns.barplot(data=frame, x="learner", y=metric, hue=hue, errorbar="sd", ax=ax)
        ax.set(ylabel=f"test {metric}", title=f"{metric} per learner (spread over seeds)")
        low = frame[metric].min()
        ax.set_ylim(max(0.0, low - 0.1), None)
        fig.tight_layout()
        written.append(out / f"{metric.replace('@', '_at_')}_per_learner.png")
        fig.savefig(written[-1], dpi=120)
        if "sessions" in axes:
            fig, ax = _figure()
            sns.lineplot(data=frame, x="sessions", y=metric, hue="learner", marker="o", errorbar="sd", ax=ax)
            ax.set(xscale="log", ylabel=f"test {metric}", title=f"{metric} against the number of sessions")
            fig.tight_layout()
            written.append(out / f"{metric.replace('@', '_at_')}_vs_sessions.png")
            fig.savefig(written[-1], dpi=120)
        if propensities:
            rows = []
            for entry in propensities:
                for rank, value in enumerate(entry["examination"], start=1):
                    rows.append({"rank": rank, "examination": value, "curve": entry["estimator"]})
            truth_rows = [{"rank": r, "examination": v, "curve": "true"} for r, v in enumerate(truth or [], start=1)]
            fig, ax = _figure()
            sns.lineplot(data=pd.DataFrame(rows + truth_rows), x="rank", y="examination", hue="curve", marker="o",
                         errorbar="sd", ax=ax)
            ax.set(ylabel="examination (normalised at rank 1)", title="estimated propensities")
            fig.tight_layout()
            written.append(out / "propensities.png")
            fig.savefig(written[-1], dpi=120)
    return written
