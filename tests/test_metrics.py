"""Metrics against hand-computed values, and the TREC files against an independent scorer.

The scorer below follows trec_eval's rules (sort by score, ties by document name descending; gain = the
qrels value; ideal DCG from every judged document of the query; mean over the queries of the qrels) and
uses nothing from ``ultr.metrics``.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from ultr.cli import main
from ultr.metrics import err, evaluate_rankings, mrr, ndcg

MQ2008 = Path(__file__).resolve().parents[2] / "shared" / "data" / "mq2008" / "Fold1"


@pytest.mark.slow
def test_err_uses_the_grade_scale_maximum():
    scores, labels = jnp.array([3.0, 2.0, 1.0]), jnp.array([2.0, 0.0, 1.0])
    # R = (2^y - 1) / 2^max: with max 2: 3/4, 0, 1/4 -> 3/4 + (1/4)(1)(1/4)/3
    assert float(err(scores, labels, max_label=2)) == pytest.approx(0.75 + 0.25 * 0.25 / 3, abs=1e-6)
    # with max 4 (MSLR's scale): 3/16, 0, 1/16 -> 3/16 + (13/16)(1/16)/3
    assert float(err(scores, labels, max_label=4)) == pytest.approx(3 / 16 + 13 / 16 / 16 / 3, abs=1e-6)
    # a list whose best grade is 1 on a 0..4 scale is not "perfectly relevant"
    assert float(err(jnp.array([1.0]), jnp.array([1.0]), max_label=4)) == pytest.approx(1 / 16)
    both = evaluate_rankings(jnp.array([[1.0, 0.0], [1.0, 0.0]]), jnp.array([[1.0, 0.0], [4.0, 0.0]]),
                             jnp.ones((2, 2), bool), ("err@10",))  # default: the highest grade given (4)
    assert both["err@10"] == pytest.approx((1 / 16 + 15 / 16) / 2, abs=1e-6)


@pytest.mark.slow
def test_ndcg_and_mrr_by_hand():
    scores, labels = jnp.array([0.3, 0.2, 0.1, 0.0]), jnp.array([0.0, 2.0, 0.0, 1.0])
    dcg = 3 / math.log2(3) + 1 / math.log2(5)
    ideal = 3 + 1 / math.log2(3)
    assert float(ndcg(scores, labels)) == pytest.approx(dcg / ideal, abs=1e-6)
    assert float(ndcg(scores, labels, topn=2)) == pytest.approx((3 / math.log2(3)) / ideal, abs=1e-6)
    assert float(mrr(scores, labels)) == pytest.approx(0.5)
    tied = jnp.array([1.0, 1.0, 1.0, 1.0])  # ties keep dataset order: the first relevant document is 2nd
    assert float(mrr(tied, labels)) == pytest.approx(0.5)


def _read_trec(run_path: Path, qrels_path: Path):
    qrels: dict[str, dict[str, float]] = defaultdict(dict)
    for line in qrels_path.read_text().splitlines():
        query, _, doc, gain = line.split()
        qrels[query][doc] = float(gain)
    run: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for line in run_path.read_text().splitlines():
        query, _, doc, _, score, _ = line.split()
        run[query].append((float(score), doc))
    return run, qrels


def _trec_eval_ndcg_cut(run, qrels, k: int) -> float:
    values = []
    for query, judged in qrels.items():
        ranked = sorted(run.get(query, []), key=lambda item: (item[0], item[1]), reverse=True)[:k]
        dcg = sum(judged.get(doc, 0.0) / math.log2(i + 2) for i, (_, doc) in enumerate(ranked))
        ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(judged.values(), reverse=True)[:k]))
        values.append(dcg / ideal if ideal > 0 else 0.0)
    return sum(values) / len(values)


def _err_cut(run, qrels, k: int, max_grade: int) -> float:
    values = []
    for query, judged in qrels.items():
        ranked = sorted(run.get(query, []), key=lambda item: (item[0], item[1]), reverse=True)[:k]
        reach, total = 1.0, 0.0
        for i, (_, doc) in enumerate(ranked):
            grade = math.log2(judged.get(doc, 0.0) + 1)  # the qrels hold 2^y - 1
            stop = (2**grade - 1) / 2**max_grade
            total += reach * stop / (i + 1)
            reach *= 1 - stop
        values.append(total)
    return sum(values) / len(values)


@pytest.mark.parametrize("data", ["mq2008", "synthetic:queries=80,docs=12,seed=5"])
@pytest.mark.slow
def test_run_files_rescore_to_the_reported_metrics(tmp_path, data):
    if data == "mq2008":
        if not MQ2008.exists():
            pytest.skip(f"real data not found at {MQ2008}")
        data = str(MQ2008)
    out = tmp_path / "skyline"
    assert main(["train", "--data", data, "--learner", "skyline", "--ranker", "linear", "--max-steps", "30",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    run, qrels = _read_trec(out / "test.run", out / "test.qrels")
    assert len(qrels) == metrics["num_queries"]  # queries without a relevant document are not in the qrels
    for k in (1, 3, 5, 10):
        assert _trec_eval_ndcg_cut(run, qrels, k) == pytest.approx(metrics[f"ndcg@{k}"], abs=1e-5)
    max_grade = 2 if data == str(MQ2008) else 4
    assert _err_cut(run, qrels, 10, max_grade) == pytest.approx(metrics["err@10"], abs=1e-5)
    scores = np.array([s for ranked in run.values() for s, _ in ranked])
    assert scores.min() >= 1  # rank-derived scores: no ties left for a tool to break
