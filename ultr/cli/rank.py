"""``ultr rank``: score a dataset with a saved model and write a TREC run."""

from __future__ import annotations

import argparse
from pathlib import Path

from click_models.storage import path_argument

from .common import UsageError, positive_int


def add_parser(commands) -> None:
    rank = commands.add_parser(
        "rank",
        help="score a LETOR file or a dataset split with a saved model and write a TREC run",
        description=(
            "Score the documents of --data with the ranker saved by 'ultr train' (OUT/model), standardising the "
            "features as in training, and write a TREC run file (documents named by the file's #docid comments "
            "where it has them, else QUERY-DOC). Where the documents have relevance labels, prints nDCG@10 and "
            "the other test metrics."
        ),
    )
    rank.add_argument("--model", type=Path, required=True, help="a saved model directory (OUT/model of ultr train)")
    rank.add_argument("--data", required=True,
                      help="a LETOR file (all of it is scored), or a fold directory, dataset name, synthetic or "
                           "baidu:DIR (the --split is scored)")
    rank.add_argument("--split", choices=["train", "vali", "test"], default="test",
                      help="the split of a dataset to score (default: test; ignored for a single file)")
    rank.add_argument("--out", type=path_argument, required=True, help="the TREC run file to write")
    rank.add_argument("--qrels", type=path_argument, help="also write the labels as TREC qrels here (default: none)")
    rank.add_argument("--tag", default="ultr", help="run tag, the run file's last column (default: ultr)")
    rank.add_argument("--batch-size", type=positive_int, default=65_536,
                      help="documents scored at a time (default: 65536)")
    rank.set_defaults(handler=run)


def _ranking_data(spec: str, split: str, num_features: int, normalize: str | None):
    from simulators.datasets import load_dataset, normalize_features, read_letor_cached

    path = Path(spec)
    if path.is_file():  # read at the model's width: feature ids above it are an error, absent ones zeros
        data = normalize_features(read_letor_cached(path, num_features=num_features), normalize)
        max_label = int(data.labels.max()) if data.num_documents else 1
    else:
        dataset = load_dataset(spec, normalize=normalize)
        data, max_label = dataset.split(split), dataset.max_label
    if data.num_documents == 0:
        raise UsageError(f"--data {spec}: no documents to score")
    return data, max(max_label, 1)


def run(args: argparse.Namespace) -> int:
    import jax.numpy as jnp
    import numpy as np

    from click_models.logs import atomic_write_text
    from ultr.data import FeatureStore
    from ultr.saved import ModelFormatError, check_features, load_ranker
    from ultr.training import TEST_METRICS, evaluate_scores, trec_run

    try:
        ranker, saved = load_ranker(args.model)
    except ModelFormatError as error:
        raise UsageError(f"--model {error}") from None
    data, max_label = _ranking_data(args.data, args.split, saved.num_features, saved.normalize)
    try:
        check_features(saved, data.num_features, f"--data {args.data}")
    except ModelFormatError as error:
        raise UsageError(str(error)) from None
    store = FeatureStore(data, saved.mean, saved.scale)
    table = store.table  # [N + 1, F]: standardised as in training, the last row the padding
    row_scores = np.concatenate([np.asarray(ranker(jnp.asarray(table[i:i + args.batch_size])))
                                 for i in range(0, len(table), args.batch_size)])
    lists = store.labelled_lists()
    scores = row_scores[lists.rows]
    run_text, qrels = trec_run(data, lists, scores, args.tag)
    atomic_write_text(run_text, args.out)
    if args.qrels is not None:
        atomic_write_text(qrels, args.qrels)
    print(f"{saved.learner} model: {data.num_queries} queries, {data.num_documents} documents -> {args.out}")
    if (data.labels > 0).any():
        metrics = evaluate_scores(scores, lists, TEST_METRICS, max_label)
        print("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "num_queries"))
    return 0
