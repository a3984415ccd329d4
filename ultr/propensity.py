"""Propensity (examination) estimation from click logs.

Every estimator returns examination per rank normalised at rank 1,
``theta_k / theta_1``, with bootstrap confidence intervals where they are cheap:

* ``ctr``: click-through rate per rank (biased by relevance: the baseline).
* ``randtopk``: CTR per rank over RandTop-k sessions, where relevance no longer
  depends on the rank (Joachims et al., WSDM 2017).
* ``swap``: the top document's CTR at rank k after a swap with rank 1, over its
  CTR at rank 1 without intervention (Joachims et al. 2017; Wang et al., WSDM 2018).
* ``pivot``, ``adjacent``, ``allpairs``: intervention harvesting from the logs of
  several logging policies (Agarwal et al., WSDM 2019; Fang et al., SIGIR 2019):
  a (query, document) shown at ranks k and k' gives the ratio theta_k / theta_k'.
  Pivot-One uses the pairs (1, k), Adjacent-Chain multiplies the ratios of
  neighbouring ranks, All-Pairs fits every pair by weighted least squares in log
  space (an extremum estimator).
* ``em``: the position-based model fitted by EM (Chuklin et al. 2015) — the
  RegressionEM idea with a table of document relevance.
* ``dla``: the propensities learned by the dual learning algorithm (needs the dataset).
* ``trust-bias``: click probabilities of relevant and non-relevant documents per rank
  from documents shown at several ranks (Agarwal et al., WWW 2019).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from click_models.logs import ClickLogError, infer_list_size, iter_click_log

ESTIMATORS = ("ctr", "randtopk", "swap", "pivot", "adjacent", "allpairs", "em", "dla", "trust-bias")
NEEDS = {
    "randtopk": "RandTop-k sessions (intervention = 1): simulate with --intervention randtopk",
    "swap": "swap sessions (intervention = k >= 2) and sessions without intervention: simulate with "
            "--intervention swap --intervention-rate below 1",
    "pivot": "the same documents shown at different ranks by several logging policies: simulate with "
             "--policy production,production,... or a stochastic policy",
}
NEEDS["adjacent"] = NEEDS["allpairs"] = NEEDS["trust-bias"] = NEEDS["pivot"]


class MissingInterventionError(ClickLogError):
    """The log lacks the interventions an estimator needs."""


@dataclasses.dataclass
class PropensityEstimate:
    estimator: str
    examination: np.ndarray
    ci_low: np.ndarray | None
    ci_high: np.ndarray | None
    sessions: int
    extra: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        as_list = lambda x: None if x is None else [None if not np.isfinite(v) else float(v) for v in x]  # noqa: E731
        out = {"estimator": self.estimator, "examination": as_list(self.examination),
               "ci_low": as_list(self.ci_low), "ci_high": as_list(self.ci_high), "sessions": self.sessions}
        out.update({k: as_list(np.asarray(v, np.float64)) for k, v in self.extra.items()})
        return out


def _normalise(theta: np.ndarray) -> np.ndarray:
    theta = np.asarray(theta, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return theta / theta[..., :1]


def _percentiles(replicates: np.ndarray, level: float = 0.95):
    alpha = (1 - level) / 2
    replicates = np.where(np.isfinite(replicates), replicates, np.nan)  # replicates without support
    supported = ~np.isnan(replicates).all(axis=0)  # ranks no replicate can estimate get no interval (NaN)
    low, high = np.full(replicates.shape[1:], np.nan), np.full(replicates.shape[1:], np.nan)
    low[supported] = np.nanpercentile(replicates[:, supported], 100 * alpha, axis=0)
    high[supported] = np.nanpercentile(replicates[:, supported], 100 * (1 - alpha), axis=0)
    return low, high


def _session_batches(logs, K, columns=("intervention", "policy")):
    for batch in iter_click_log(logs, 65_536, K, columns=columns):
        valid = batch.row_valid & batch.mask.any(axis=1)
        yield batch, valid


def estimate_counting(logs, estimator: str, bootstrap: int = 200, seed: int = 0) -> PropensityEstimate:
    """``ctr``, ``randtopk`` and ``swap``: ratios of click sums, with a Poisson bootstrap over sessions."""
    K = infer_list_size(logs)
    rng = np.random.default_rng(seed)
    B = bootstrap
    clicks = np.zeros((B + 1, K))
    shown = np.zeros((B + 1, K))
    reference_clicks = np.zeros(B + 1)
    reference_shown = np.zeros(B + 1)
    sessions = 0
    saw_intervention = False
    for batch, valid in _session_batches(logs, K):
        code = batch.intervention if batch.intervention is not None else np.zeros(len(valid), np.int32)
        if estimator == "ctr":
            use = valid
        elif estimator == "randtopk":
            use = valid & (code == 1)
        else:
            use = valid & (code >= 2)
        saw_intervention |= bool(use.any()) or estimator == "ctr"
        weights = np.vstack([np.ones(len(valid)), rng.poisson(1.0, (B, len(valid)))])  # [B+1, n]
        if estimator == "swap":
            # the original top document sits at rank k = code in swapped sessions
            rows = np.flatnonzero(use)
            k = code[rows] - 1
            c = batch.clicks[rows, k].astype(np.float64)
            for b in range(B + 1):
                clicks[b] += np.bincount(k, weights=weights[b, rows] * c, minlength=K)
                shown[b] += np.bincount(k, weights=weights[b, rows], minlength=K)
            reference = valid & (code == 0)
            reference_clicks += weights[:, reference] @ batch.clicks[reference, 0].astype(np.float64)
            reference_shown += weights[:, reference].sum(axis=1)
        else:
            c = (batch.clicks & batch.mask)[use].astype(np.float64)
            m = batch.mask[use].astype(np.float64)
            clicks += weights[:, use] @ c
            shown += weights[:, use] @ m
        sessions += int(use.sum())
    if not saw_intervention or sessions == 0:
        raise MissingInterventionError(f"{logs}: the {estimator} estimator needs {NEEDS[estimator]}; "
                                       "this log has none")
    if estimator == "swap" and reference_shown[0] == 0:
        raise MissingInterventionError(f"{logs}: the swap estimator needs {NEEDS['swap']}")
    with np.errstate(divide="ignore", invalid="ignore"):
        ctr = clicks / shown
        if estimator == "swap":
            ctr[:, 0] = reference_clicks / reference_shown
    theta = _normalise(ctr)
    low, high = _percentiles(theta[1:]) if B > 0 else (None, None)
    return PropensityEstimate(estimator, theta[0], low, high, sessions)


def harvest_cells(logs) -> pd.DataFrame:
    """Impressions and clicks per (query, document, rank), summed over the log."""
    K = infer_list_size(logs)
    frames = []
    for batch, valid in _session_batches(logs, K, columns=()):
        mask = batch.mask & valid[:, None]
        rank = np.broadcast_to(np.arange(K), mask.shape)[mask]
        frame = pd.DataFrame({
            "query_id": np.broadcast_to(batch.query_id[:, None], mask.shape)[mask],
            "doc_id": batch.doc_ids[mask],
            "rank": rank,
            "clicks": batch.clicks[mask].astype(np.int64),
            "impressions": np.ones(int(mask.sum()), np.int64),
        })
        frames.append(frame.groupby(["query_id", "doc_id", "rank"], sort=False).sum())
        if len(frames) > 8:
            frames = [pd.concat(frames).groupby(level=[0, 1, 2]).sum()]
    if not frames:
        raise ClickLogError(f"{logs}: no sessions")
    return pd.concat(frames).groupby(level=[0, 1, 2]).sum().reset_index()


def document_matrices(logs) -> tuple[np.ndarray, np.ndarray, int]:
    """Impressions and clicks ``[documents, K]`` per (query, document) and rank, and the impressions in all."""
    K = infer_list_size(logs)
    cells = harvest_cells(logs)
    doc = pd.factorize(pd.MultiIndex.from_frame(cells[["query_id", "doc_id"]]))[0]
    n = np.zeros((doc.max() + 1, K))
    c = np.zeros_like(n)
    np.add.at(n, (doc, cells["rank"].to_numpy()), cells["impressions"].to_numpy())
    np.add.at(c, (doc, cells["rank"].to_numpy()), cells["clicks"].to_numpy())
    return n, c, int(cells["impressions"].sum())


def _pair_ratios(n: np.ndarray, c: np.ndarray, doc_weights: np.ndarray | None = None):
    """Weighted CTR ratios ``r[k, k'] = theta_k / theta_k'`` from documents shown at both ranks."""
    K = n.shape[1]
    w_doc = np.ones(len(n)) if doc_weights is None else doc_weights
    numerator = np.zeros((K, K))
    support = np.zeros((K, K))
    for k in range(K):
        for j in range(K):
            if j == k:
                continue
            both = (n[:, k] > 0) & (n[:, j] > 0)
            if not both.any():
                continue
            # harmonic weights: each document counts by how much it was seen at both ranks
            weight = w_doc[both] * n[both, k] * n[both, j] / (n[both, k] + n[both, j])
            numerator[k, j] = np.sum(weight * c[both, k] / n[both, k])
            support[k, j] = np.sum(weight)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = numerator / numerator.T
    return ratio, support


def _harvest(estimator: str, ratio: np.ndarray, support: np.ndarray) -> np.ndarray:
    K = ratio.shape[0]
    if estimator == "pivot":
        return np.array([1.0] + [ratio[k, 0] for k in range(1, K)])
    if estimator == "adjacent":
        return np.cumprod([1.0] + [ratio[k, k - 1] for k in range(1, K)])
    # all pairs: weighted least squares on log theta_k - log theta_j = log r[k, j], theta_1 = 1
    rows, targets, weights = [], [], []
    for k in range(K):
        for j in range(k + 1, K):
            if support[k, j] > 0 and np.isfinite(ratio[k, j]) and ratio[k, j] > 0:
                row = np.zeros(K)
                row[k], row[j] = 1.0, -1.0
                rows.append(row)
                targets.append(np.log(ratio[k, j]))
                weights.append(np.sqrt(support[k, j]))
    if not rows:
        return np.full(K, np.nan)
    A, y, w = np.array(rows)[:, 1:], np.array(targets), np.array(weights)
    solution, *_ = np.linalg.lstsq(A * w[:, None], y * w, rcond=None)
    return np.exp(np.concatenate([[0.0], solution]))


def estimate_harvesting(logs, estimator: str, bootstrap: int = 100, seed: int = 0) -> PropensityEstimate:
    n, c, sessions = document_matrices(logs)
    ratio, support = _pair_ratios(n, c)
    if not np.isfinite(ratio[1:, 0]).any() and not np.isfinite(np.diag(ratio, -1)).any():
        raise MissingInterventionError(f"{logs}: the {estimator} estimator needs {NEEDS[estimator]}; no document "
                                       "of this log was shown at two different ranks")
    theta = _harvest(estimator, ratio, support)
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(bootstrap):  # cluster bootstrap over (query, document)
        r, s = _pair_ratios(n, c, rng.poisson(1.0, len(n)).astype(np.float64))
        replicates.append(_harvest(estimator, r, s))
    low, high = _percentiles(np.array(replicates)) if bootstrap else (None, None)
    return PropensityEstimate(estimator, theta, low, high, sessions)


def _trust_bias_em(n: np.ndarray, c: np.ndarray, doc_weights: np.ndarray, iterations: int = 500,
                   tolerance: float = 1e-8):
    """EM for a two-class mixture: each (query, document) is relevant (clicked at rank k with
    ``a_k``) or not (``b_k``); ``n``, ``c`` are impressions and clicks ``[documents, K]``."""
    shown = n.sum(0)
    ctr = np.divide(c.sum(0), shown, out=np.zeros(n.shape[1]), where=shown > 0)
    a, b, prior = np.clip(1.5 * ctr, 1e-3, 0.999), np.clip(0.3 * ctr, 1e-4, 0.99), 0.5
    for _ in range(iterations):
        log_rel = np.log(prior) + c @ np.log(a) + (n - c) @ np.log1p(-a)
        log_irr = np.log1p(-prior) + c @ np.log(b) + (n - c) @ np.log1p(-b)
        w = doc_weights / (1.0 + np.exp(np.clip(log_irr - log_rel, -700, 700)))  # P(relevant | clicks)
        v = doc_weights - w
        new_a = np.clip((w @ c + 1e-9) / (w @ n + 2e-9), 1e-6, 1 - 1e-6)
        new_b = np.clip((v @ c + 1e-9) / (v @ n + 2e-9), 1e-6, 1 - 1e-6)
        prior = float(np.clip(w.sum() / doc_weights.sum(), 1e-6, 1 - 1e-6))
        change = max(np.abs(new_a - a).max(), np.abs(new_b - b).max())
        a, b = new_a, new_b
        if change < tolerance:
            break
    if a[0] < b[0]:  # label switching: the relevant class clicks more
        a, b = b, a
    return a, b


def estimate_trust_bias(logs, bootstrap: int = 30, seed: int = 0) -> PropensityEstimate:
    """Trust bias per rank from documents shown at several ranks (interventions or several policies).

    Each (query, document) is relevant or not (binary relevance, Agarwal et al., WWW 2019); a
    relevant document at rank k is clicked with ``a_k = theta_k eps+_k``, a non-relevant one with
    ``b_k = theta_k eps-_k``. A two-class mixture fitted by EM over the documents identifies
    ``a`` and ``b``; the file holds ``examination = a / a_1`` with ``epsilon_pos``/``epsilon_neg``
    scaled so that ``examination * epsilon_pos = a`` and ``examination * epsilon_neg = b``
    (what the affine correction of Vardasbi et al., SIGIR 2020 needs), plus ``a`` and ``b``.
    """
    n, c, sessions = document_matrices(logs)
    if not ((n > 0).sum(axis=1) > 1).any():
        raise MissingInterventionError(f"{logs}: the trust-bias estimator needs {NEEDS['trust-bias']}; no "
                                       "document of this log was shown at two different ranks")
    a, b = _trust_bias_em(n, c, np.ones(len(n)))
    rng = np.random.default_rng(seed)
    replicates = [_normalise(_trust_bias_em(n, c, rng.poisson(1.0, len(n)).astype(np.float64), 200)[0])
                  for _ in range(bootstrap)]
    low, high = _percentiles(np.array(replicates)) if bootstrap else (None, None)
    theta = a / a[0]
    extra = {"click_if_relevant": a, "click_if_irrelevant": b, "epsilon_pos": a / theta, "epsilon_neg": b / theta}
    return PropensityEstimate("trust-bias", theta, low, high, sessions, extra)


def estimate_em(logs, max_iterations: int = 2000) -> PropensityEstimate:
    from click_models.fitting import LogSource, fit_em
    from click_models.logs import DocumentIndex, count_sessions

    K = infer_list_size(logs)
    documents = DocumentIndex.from_batches(iter_click_log(logs, 65_536, K, columns=()))
    source = LogSource(logs, documents, 65_536, K)
    result = fit_em("pbm", source, documents.size, K, max_iterations=max_iterations, tolerance=1e-7)

    return PropensityEstimate("em", _normalise(result.tables["examination"]), None, None, count_sessions(logs))


def estimate_dla(logs, data: str, seed: int = 0, epochs: int = 2) -> PropensityEstimate:
    from click_models.logs import count_sessions
    from simulators.datasets import load_dataset
    from ultr.training import TrainConfig, train

    if data is None:
        raise ValueError("the dla estimator trains a ranker: give --data (the dataset the logs come from)")
    # the goal is the propensity model, so train to the end (no early stopping), with ULTRA's optimiser settings
    config = TrainConfig(learner="dla", hidden=(64, 32), seed=seed, epochs=epochs, patience=10**9, eval_every=1000,
                         optimizer="adagrad", learning_rate=0.05, max_weight=1e9)
    result = train(logs, load_dataset(data), config, progress=False)
    return PropensityEstimate("dla", np.asarray(result.propensities), None, None, count_sessions(logs))


def estimate(logs, estimator: str, *, data: str | None = None, bootstrap: int = 200, seed: int = 0) -> PropensityEstimate:
    """Run one estimator on a click log (see the module docstring)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")
    if estimator in ("ctr", "randtopk", "swap"):
        return estimate_counting(logs, estimator, bootstrap, seed)
    if estimator in ("pivot", "adjacent", "allpairs"):
        return estimate_harvesting(logs, estimator, min(bootstrap, 100), seed)
    if estimator == "em":
        return estimate_em(logs)
    if estimator == "trust-bias":
        return estimate_trust_bias(logs, min(bootstrap, 30), seed)
    return estimate_dla(logs, data, seed)


def true_examination(logs) -> np.ndarray | None:
    """The simulation's examination per rank, normalised at rank 1 (None for real logs)."""
    path = Path(logs)
    meta = path / "simulation.json" if path.is_dir() else path.parent / "simulation.json"
    if not meta.exists():
        return None
    exam = json.loads(meta.read_text()).get("rank_parameters", {}).get("examination")
    if exam is None or np.ndim(exam) != 1:
        return None
    return _normalise(np.asarray(exam))


def plot_estimate(result: PropensityEstimate, truth: np.ndarray | None, path) -> None:
    """Estimated examination curve (with its confidence band) against the true one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    ranks = np.arange(1, len(result.examination) + 1)
    frame = pd.DataFrame({"rank": ranks, "examination": result.examination, "curve": result.estimator})
    if truth is not None:
        frame = pd.concat([frame, pd.DataFrame({"rank": ranks, "examination": truth[: len(ranks)], "curve": "true"})])
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=frame, x="rank", y="examination", hue="curve", style="curve", markers=True, ax=ax)
    if result.ci_low is not None:
        ax.fill_between(ranks, result.ci_low, result.ci_high, alpha=0.2)
    ax.set(xlabel="rank", ylabel="examination (normalised at rank 1)", xticks=ranks)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
