"""Saved models: ultr train writes OUT/model, ultr rank scores with it, ultr train --init starts from it."""

import json

import numpy as np
import pytest

from conftest import shared
from ultr.cli import main

DATA = "synthetic:queries=60,docs=8,features=6,seed=3"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    assert main(["simulate", "--data", DATA, "--sessions", "3000", "--chunk-size", "3000",
                 "--out", str(root / "logs")]) == 0
    assert main(["train", "--logs", str(root / "logs"), "--data", DATA, "--learner", "dla", "--epochs", "1",
                 "--out", str(root / "dla")]) == 0
    return root


def _run_lines(path):
    return sorted(" ".join(line.split()[:5]) for line in path.read_text().splitlines())


@pytest.mark.slow
def test_rank_reproduces_the_test_run_and_metrics_of_training(trained, capsys):
    model = trained / "dla" / "model"
    meta = json.loads((model / "model.json").read_text())
    assert meta["format"] == 1 and meta["learner"] == "dla" and meta["num_features"] == 6
    capsys.readouterr()
    assert main(["rank", "--model", str(model), "--data", DATA, "--out", str(trained / "rank.run"),
                 "--qrels", str(trained / "rank.qrels")]) == 0
    printed = capsys.readouterr().out
    assert _run_lines(trained / "rank.run") == _run_lines(trained / "dla" / "test.run")
    assert (trained / "rank.qrels").read_text() == (trained / "dla" / "test.qrels").read_text()
    metrics = json.loads((trained / "dla" / "metrics.json").read_text())["test"]
    assert f"ndcg@10 {metrics['ndcg@10']:.4f}" in printed


@pytest.mark.slow
def test_init_restores_the_learner_or_its_ranker(trained, capsys):
    from ultr.saved import load_ranker, read_model

    model = trained / "dla" / "model"
    for learner, restored in (("dla", "learner"), ("naive", "ranker")):
        out = trained / f"init-{learner}"
        assert main(["train", "--logs", str(trained / "logs"), "--data", DATA, "--learner", learner,
                     "--epochs", "1", "--learning-rate", "1e-12", "--init", str(model), "--out", str(out)]) == 0
        assert json.loads((out / "metrics.json").read_text())["init"]["restored"] == restored
        # a learning rate of 1e-12 leaves the restored ranker as it was
        before, _ = load_ranker(model)
        after, _ = load_ranker(out / "model")
        x = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
        np.testing.assert_allclose(np.asarray(after(x)), np.asarray(before(x)), rtol=1e-4, atol=1e-5)
    assert read_model(trained / "init-dla" / "model").learner == "dla"


@pytest.mark.slow
def test_saved_model_errors_are_one_line(trained, tmp_path, capsys):
    model = trained / "dla" / "model"
    cases = [
        (["rank", "--model", str(tmp_path), "--data", DATA, "--out", str(tmp_path / "r")], "not a saved model"),
        (["rank", "--model", str(model), "--data", "synthetic:queries=20,docs=5,features=7",
          "--out", str(tmp_path / "r")], "7 features, but the model"),
        (["train", "--data", "synthetic:queries=60,docs=8,features=8,seed=3", "--learner", "skyline",
          "--init", str(model), "--out", str(tmp_path / "t")], "--init: 8 features, but the model"),
    ]
    for args, message in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as raised:
            main(args)
        assert raised.value.code == 2
        assert message in capsys.readouterr().err
    other = tmp_path / "future"
    other.mkdir()
    meta = json.loads((model / "model.json").read_text())
    (other / "model.json").write_text(json.dumps({**meta, "format": 99}))
    (other / "learner.msgpack").write_bytes((model / "learner.msgpack").read_bytes())
    with pytest.raises(SystemExit) as raised:
        main(["rank", "--model", str(other), "--data", DATA, "--out", str(tmp_path / "r")])
    assert raised.value.code == 2
    assert "model format 99; this release reads format 1" in capsys.readouterr().err


def test_run_files_name_documents_by_the_letor_docid(tmp_path):
    from simulators.datasets import read_letor_cached
    from ultr.data import FeatureStore
    from ultr.training import trec_run

    path = tmp_path / "t.txt"
    path.write_text("2 qid:5 1:0.9 #docid = A-1 inc = 1\n0 qid:5 1:0.1 #docid = A-2\n1 qid:6 1:0.5\n")
    data = read_letor_cached(path, cache=False)
    lists = FeatureStore.fit(data).labelled_lists()
    run, qrels = trec_run(data, lists, np.where(lists.mask, lists.labels, 0.0), "t")
    assert [line.split()[2] for line in run.splitlines()] == ["A-1", "A-2", "6-2"]
    assert "5 0 A-1 3" in qrels


def test_mq2008_runs_use_the_gov2_document_names(tmp_path):
    from simulators.datasets import read_letor_cached
    from ultr.training import document_names

    data = read_letor_cached(shared("mq2008", "Fold1", "test.txt"))
    name = document_names(data)
    assert name(data.query_ids[0], data.doc_ids[0]).startswith("GX")
