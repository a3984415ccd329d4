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


#: what the whiskers and bands of the experiment plots show (seaborn's bootstrap interval of the mean)
INTERVAL = ("ci", 95)
INTERVAL_TEXT = "95% bootstrap interval of the mean over seeds"


def _point_label(entry: dict, axes: list[str]) -> str:
    return ", ".join(f"{axis}={entry[axis]}" for axis in axes if axis in entry) or "all"


def results_figures(frame: pd.DataFrame, propensities: list[dict], metric: str, axes: list[str],
                    truth: list | None = None) -> dict:
    """The figures of an experiment, by file name (not saved): the metric per learner (bars from 0), against
    the number of sessions where that is a grid axis, and the estimated propensities with one panel per grid
    point and the truth drawn where the log has one (``truth`` in each propensity entry, else ``truth``)."""
    import seaborn as sns

    figures = {}
    name = metric.replace("@", "_at_")
    seeds = frame["seed"].nunique() if "seed" in frame else 1
    caption = INTERVAL_TEXT if seeds > 1 else "one seed: no interval"
    with sns.axes_style(THEME):
        fig, ax = _figure((max(7, 1.2 * frame["learner"].nunique() + 3), 4.5))
        hue = axes[0] if axes else None
        sns.barplot(data=frame, x="learner", y=metric, hue=hue, errorbar=INTERVAL if seeds > 1 else None, seed=0,
                    ax=ax)
        ax.set(xlabel="learner", ylabel=f"test {metric}", title=f"{metric} per learner (bars: mean; {caption})")
        ax.set_ylim(0, max(1.0, float(frame[metric].max()) * 1.05) if frame[metric].notna().any() else 1.0)
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
        if hue is not None and ax.get_legend() is not None:
            ax.get_legend().set_title(hue)
        fig.tight_layout()
        figures[f"{name}_per_learner.png"] = fig
        if "sessions" in axes:
            fig, ax = _figure()
            sns.lineplot(data=frame, x="sessions", y=metric, hue="learner", marker="o",
                         errorbar=INTERVAL if seeds > 1 else None, seed=0, ax=ax)
            ax.set(xscale="log", xlabel="sessions", ylabel=f"test {metric}",
                   title=f"{metric} against the number of sessions ({caption})")
            fig.tight_layout()
            figures[f"{name}_vs_sessions.png"] = fig
        if propensities:
            figures["propensities.png"] = _propensity_figure(propensities, axes, truth)
    return figures


def _propensity_figure(propensities: list[dict], axes: list[str], truth: list | None):
    import seaborn as sns
    from matplotlib.figure import Figure

    points: dict[str, list[dict]] = {}
    for entry in propensities:  # one panel per grid point: logs of other models or sizes are not pooled
        points.setdefault(_point_label(entry, [a for a in axes if a != "seed"]), []).append(entry)
    columns = min(3, len(points))
    rows = -(-len(points) // columns)
    fig = Figure(figsize=(4.8 * columns, 3.8 * rows + 0.4))
    any_interval = False
    for index, (label, entries) in enumerate(points.items(), start=1):
        ax = fig.add_subplot(rows, columns, index)
        frame = pd.DataFrame([{"rank": rank, "examination": value, "curve": entry["estimator"]}
                              for entry in entries for rank, value in enumerate(entry["examination"], start=1)])
        several = any(len([e for e in entries if e["estimator"] == est]) > 1 for est in frame["curve"].unique())
        sns.lineplot(data=frame, x="rank", y="examination", hue="curve", marker="o",
                     errorbar=INTERVAL if several else None, seed=0, ax=ax)
        with_truth = next((e for e in entries if e.get("truth") is not None), {})
        curve, kind = with_truth.get("truth"), with_truth.get("truth_kind", "curve")
        curve = truth if curve is None and len(points) == 1 else curve
        if curve is not None:
            ax.plot(np.arange(1, len(curve) + 1), curve, "k--", linewidth=1.5,
                    label="truth" if kind != "mean" else "truth (mean examination in the log)")
        ax.legend(title="estimate", fontsize="small", title_fontsize="small")
        ax.set(title=label, xlabel="rank", ylabel="examination (normalised at rank 1)")
        any_interval = any_interval or several
    fig.suptitle("estimated propensities per grid point" + (f" (bands: {INTERVAL_TEXT})" if any_interval else ""))
    fig.tight_layout()
    return fig


def plot_results(out: Path, frame: pd.DataFrame, propensities: list[dict], metric: str, axes: list[str],
                 truth: list | None = None) -> list[Path]:
    """Save the figures of :func:`results_figures` into ``out``; returns their paths."""
    written = []
    for name, fig in results_figures(frame, propensities, metric, axes, truth).items():
        written.append(Path(out) / name)
        fig.savefig(written[-1], dpi=120)
    return written
