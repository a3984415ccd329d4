"""Fault injection: interrupted and concurrent writers, disk full, corrupt files, bad inputs, clean errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from click_models.logs import ClickLogError, click_log_files, count_sessions
from simulators.datasets import synthetic_dataset
from simulators.simulation import SimulationConfig, Simulator
from ultr.cli import main

DATA = "synthetic:queries=60,docs=10,features=8,seed=1"


def _dataset():
    return synthetic_dataset(num_queries=60, docs_per_query=10, num_features=8, seed=1)


def _ultr(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "ultr", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _staging(out: Path):
    return list(out.parent.glob(f".{out.name}.staging-*"))


def _long_simulation(out: Path, *extra):
    # many small parts, so that the kill lands in the middle of the run
    # (the uniform policy trains no production ranker: the subprocess starts writing sooner)
    return _ultr("simulate", "--data", DATA, "--policy", "uniform", "--sessions", "4000000", "--chunk-size", "20000",
                 "--rows-per-file", "40000", "--out", str(out), *extra)


def _started(process, out: Path) -> bool:
    ok = _wait_for(lambda: any(s.exists() and any(s.glob("*.parquet")) for s in _staging(out)))
    assert ok, process.communicate(timeout=5)
    return ok


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
@pytest.mark.slow
def test_an_interrupted_simulation_leaves_no_log_and_a_rerun_succeeds(tmp_path, sig):
    out = tmp_path / "logs"
    process = _long_simulation(out)
    _started(process, out)
    process.send_signal(sig)
    process.wait(timeout=60)
    assert process.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    assert not out.exists()  # nothing half-written at the log's path
    for command in (["fit", "--logs", str(out), "--out", str(tmp_path / "fit")],
                    ["propensity", "--logs", str(out), "--estimator", "ctr", "--out", str(tmp_path / "p.json")]):
        assert main(command) == 2
    if sig == signal.SIGINT:
        assert not _staging(out)  # cleaned up on the way out
    assert main(["simulate", "--data", DATA, "--sessions", "5000", "--out", str(out), "--overwrite"]) == 0
    assert not _staging(out) and not (out.parent / f".{out.name}.lock").exists()
    assert count_sessions(out) == 5000 and (out / "manifest.json").exists()


@pytest.mark.slow
def test_a_killed_simulation_resumes_from_its_finished_parts(tmp_path):
    """The same command after a SIGKILL keeps the parts the killed run finished (checked by SHA-256) and
    simulates only the rest; the log has the bytes of an uninterrupted run."""
    import hashlib

    args = ["--sessions", "1200000", "--chunk-size", "20000", "--rows-per-file", "40000"]
    out = tmp_path / "logs"
    process = _long_simulation(out, *args[:2])
    assert _wait_for(lambda: any(len(list(s.glob("part-*.parquet"))) >= 3 for s in _staging(out)))
    process.kill()
    process.wait(timeout=60)
    (stage,) = _staging(out)
    finished = len(list(stage.glob("part-*.parquet")))
    rerun = _long_simulation(out, *args[:2])
    assert rerun.wait(timeout=300) == 0, rerun.communicate()
    summary = json.loads((out / "simulation.json").read_text())["summary"]
    assert finished - 1 <= summary["resumed_parts"] <= finished and summary["resumed_parts"] >= 2
    fresh = _long_simulation(tmp_path / "fresh", *args[:2])
    assert fresh.wait(timeout=300) == 0
    digests = [{p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("*.parquet"))}
               for d in (out, tmp_path / "fresh")]
    assert digests[0] == digests[1] and len(digests[0]) == 30
    assert not _staging(out) and not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_an_interrupted_overwrite_leaves_the_old_log_whole(tmp_path):
    out = tmp_path / "logs"
    assert main(["simulate", "--data", DATA, "--sessions", "3000", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    process = _long_simulation(out, "--overwrite", "--seed", "7")
    _started(process, out)
    process.kill()
    process.wait(timeout=60)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert count_sessions(out) == 3000 and len(click_log_files(out)) == 1  # the manifest still verifies


@pytest.mark.slow
def test_a_second_writer_of_the_same_log_is_refused(tmp_path, capsys):
    out = tmp_path / "logs"
    first = _long_simulation(out)
    try:
        _started(first, out)
        assert main(["simulate", "--data", DATA, "--sessions", "1000", "--out", str(out), "--overwrite"]) == 2
        assert "another ultr process" in capsys.readouterr().err
    finally:
        first.kill()
        first.wait(timeout=60)


@pytest.mark.slow
def test_disk_full_in_the_middle_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = pq.ParquetWriter.write_table

    def failing(self, table, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(28, "No space left on device")
        return original(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", failing)
    out = tmp_path / "logs"
    with pytest.raises(OSError, match="No space left"):
        Simulator(_dataset(), SimulationConfig(), seed=0).run(out, 200_000, chunk_size=10_000, rows_per_file=50_000,
                                                              progress=False)
    assert not out.exists() and not _staging(out) and not (tmp_path / ".logs.lock").exists()


@pytest.fixture
def log(tmp_path):
    out = tmp_path / "logs"
    Simulator(_dataset(), SimulationConfig(), seed=0).run(out, 4_000, rows_per_file=2_000, progress=False)
    return out


@pytest.mark.slow
def test_corrupt_truncated_stray_and_unfinished_logs_are_refused(log, tmp_path):
    part = sorted(log.glob("*.parquet"))[0]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(ClickLogError, match="SHA-256 differs"):
        click_log_files(log)
    part.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ClickLogError, match="bytes, the manifest says"):
        click_log_files(log)
    other = tmp_path / "other"
    Simulator(_dataset(), SimulationConfig(), seed=1).run(other, 1_000, progress=False)
    fresh = tmp_path / "fresh"
    Simulator(_dataset(), SimulationConfig(), seed=0).run(fresh, 1_000, progress=False)
    (fresh / "part-00007.parquet").write_bytes((other / "part-00000.parquet").read_bytes())
    with pytest.raises(ClickLogError, match="not in the manifest: the directory mixes"):
        click_log_files(fresh)
    (fresh / "part-00007.parquet").unlink()
    (fresh / "manifest.json").unlink()
    with pytest.raises(ClickLogError, match="without manifest.json"):
        click_log_files(fresh)


@pytest.mark.parametrize("column,array,message", [
    ("clicks", pa.array([["1", "0"]], pa.list_(pa.string())), "must be list<item: bool>"),
    ("clicks", pa.array([[True, None]], pa.list_(pa.bool_())), "null values"),
    ("query_id", pa.array([None], pa.int64()), "null values"),
    ("session_id", pa.array([1.5], pa.float64()), "must be int64"),
])
def test_click_log_schemas_are_checked_exactly(tmp_path, capsys, column, array, message):
    columns = {"session_id": pa.array([0], pa.int64()), "query_id": pa.array([1], pa.int64()),
               "doc_ids": pa.array([[1, 2]], pa.list_(pa.int64())), "clicks": pa.array([[True, False]])}
    columns[column] = array
    pq.write_table(pa.table(columns), tmp_path / "part.parquet")
    assert main(["propensity", "--logs", str(tmp_path), "--estimator", "ctr", "--out",
                 str(tmp_path.parent / "p.json")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_logs_remember_their_dataset_and_refuse_another_order(log, tmp_path, capsys):
    from simulators.datasets import Dataset
    from ultr.training import TrainConfig, train

    dataset = _dataset()
    train_split = dataset.train
    order = np.arange(train_split.num_documents)
    order[:2] = order[1::-1]  # two documents of the first query swap places in the file
    swapped = type(train_split)(train_split.query_ids, train_split.doc_ids, train_split.labels[order],
                                train_split.features[order], train_split.name)
    with pytest.raises(ClickLogError, match="not in the dataset as given"):
        train(log, Dataset(dataset.name, swapped, dataset.vali, dataset.test, dataset.max_label),
              TrainConfig(learner="naive", ranker="linear", max_steps=5), progress=False)


@pytest.mark.slow
def test_outputs_inside_the_log_they_read_are_refused(log, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--logs", str(log), "--out", str(log / "fit")])
    assert "inside the click log" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--logs", str(log), "--data", DATA, "--learner", "naive", "--out", str(log)])
    assert "inside the click log" in capsys.readouterr().err
    assert sorted(p.name for p in log.iterdir() if p.suffix != ".parquet") == ["manifest.json", "simulation.json"]
    assert len(click_log_files(log)) == 2  # the log is untouched


@pytest.mark.parametrize("model", ["pbm", "cascade", "dbn", "sdbn", "dcm", "ubm", "ccm", "trust_bias"])
@pytest.mark.slow
def test_the_toy_log_works_for_every_click_model(tmp_path, model):
    from click_models.logs import read_click_log
    from simulators.toy import write_toy_log

    logs = write_toy_log(model, tmp_path / model, 500, num_queries=50)
    truth = json.loads((logs / "true_params.json").read_text())
    assert truth["model"] == model
    assert len(read_click_log(logs).session_id) == 500


@pytest.mark.parametrize("model", ["dbn", "ccm"])  # the two that crashed in the toy-log path of ultr fit
@pytest.mark.slow
def test_fit_without_logs_works_for_dbn_and_ccm(tmp_path, model):
    assert main(["fit", "--click-model", model, "--sessions", "3000", "--max-iterations", "3",
                 "--out", str(tmp_path / model)]) == 0
    truth = json.loads((tmp_path / model / "logs" / "true_params.json").read_text())
    assert truth["model"] == model


@pytest.mark.slow
def test_output_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        out = tmp_path / "logs"
        Simulator(_dataset(), SimulationConfig(), seed=0).run(out, 1_000, progress=False)
        modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
        assert set(modes.values()) == {0o644}, modes
        assert out.stat().st_mode & 0o777 == 0o755
    finally:
        os.umask(previous)


@pytest.mark.parametrize("argv,message", [
    (["simulate", "--data", DATA, "--eta", "nan", "--out", "x"], "eta must be a finite non-negative number"),
    (["simulate", "--data", DATA, "--temperature", "0", "--out", "x"], "temperature must be a finite positive"),
    (["simulate", "--data", DATA, "--production-fraction", "2", "--out", "x"], "production_fraction must be in"),
    (["simulate", "--data", DATA, "--max-label", "1", "--out", "x"], "below the dataset's highest grade"),
    (["simulate", "--data", DATA, "--intervention-k", "3", "--out", "x"], "intervention_k: the absent"),
    (["simulate", "--data", DATA, "--sessions", "5000000000", "--out", "x"], "at most 2^32"),
    (["train", "--data", DATA, "--learner", "skyline", "--learning-rate", "nan", "--out", "x"],
     "--learning-rate: must be a finite number"),
    (["train", "--data", DATA, "--learner", "skyline", "--metric", "ndcg@0", "--out", "x"], "--metric"),
    (["train", "--data", DATA, "--learner", "skyline", "--metric", "ndcg@", "--out", "x"], "--metric"),
    (["train", "--data", DATA, "--learner", "skyline", "--hidden", "100000000", "--out", "x"], "--hidden"),
    (["train", "--data", DATA, "--learner", "skyline", "--batch-size", "100000", "--hidden", "65536,65536",
      "--out", "x"], "needs about"),
    (["simulate", "--data", "synthetic:queries=0", "--out", "x"], "queries must lie in"),
    (["simulate", "--data", DATA, "--max-label", "1000", "--out", "x"], "max_label must be an integer grade"),
    (["simulate", "--data", DATA, "--eps-neg", "0.9", "--eps-pos", "0.5", "--out", "x"], "eps_neg (0.9) exceeds"),
    (["simulate", "--data", DATA, "--examination", "0,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5", "--out", "x"],
     "positive first rank"),
    (["simulate", "--data", DATA, "--intervention", "randtopk", "--intervention-k", "50", "--out", "x"],
     "exceeds list_size"),
    (["fit", "--logs", "nowhere", "--sessions", "10"], "--sessions: sizes the built-in toy log"),
    (["simulate", "--data", DATA, "--temperature", "2", "--out", "x"], "--temperature: has no effect: no logging"),
    (["simulate", "--data", DATA, "--oracle-noise", "2", "--out", "x"], "--oracle-noise: has no effect"),
    (["simulate", "--data", DATA, "--policy", "uniform", "--production-fraction", "0.5", "--out", "x"],
     "--production-fraction: has no effect"),
    (["simulate", "--data", DATA, "--intervention-rate", "0.5", "--out", "x"], "there is no intervention"),
    (["simulate", "--data", DATA, "--powerlaw-exponent", "2", "--out", "x"], "query_sampling is 'uniform'"),
    (["fit", "--method", "gradient", "--learning-rate", "inf", "--sessions", "1000"], "finite positive"),
    (["fit", "--epochs", "3", "--sessions", "1000"], "--epochs: an option of --method gradient, not em"),
    (["propensity", "--logs", "LOG", "--estimator", "em", "--bootstrap", "50", "--out", "p.json"],
     "--bootstrap: the em estimator reports no interval"),
    (["fit", "--click-model", "dcm", "--method", "counting", "--max-iterations", "3"],
     "--max-iterations: an option of --method em"),
])
def test_bad_values_get_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    try:  # in-process (a subprocess per case costs a JAX import); the exit path itself is tested below
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert len([line for line in err.splitlines() if line.startswith("ultr")]) == 1, err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv,message", [
    (["simulate", "--data", DATA, "--eta", "nan", "--out", "x"], "eta must be a finite non-negative number"),
    (["fit", "--epochs", "3", "--sessions", "1000"], "--epochs: an option of --method gradient, not em"),
])
@pytest.mark.slow
def test_bad_values_exit_2_from_the_command_line(tmp_path, argv, message):
    result = subprocess.run([sys.executable, "-m", "ultr", *argv], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()


def test_run_names_stay_inside_the_out_root(tmp_path, capsys):
    config = tmp_path / "escape.toml"
    config.write_text('name = "../../escaped"\nlearners = ["naive"]\n')
    assert main(["run", str(config), "--out-root", str(tmp_path / "runs")]) == 2
    assert "name: must be a plain directory name" in capsys.readouterr().err


def test_a_huge_sparse_feature_id_is_refused_without_allocating(tmp_path):
    from simulators.letor import LetorFormatError, read_letor

    path = tmp_path / "sparse.txt"
    path.write_text("1 qid:1 1:0.5 100000000:1.0\n0 qid:1 1:0.2 2:0.1\n")
    with pytest.raises(LetorFormatError, match=r"sparse.txt:1: feature id 100,000,000 would make a dense matrix"):
        read_letor(path)


def test_a_broken_archive_is_moved_aside_and_url_downloads_report_and_check_sha256(tmp_path, monkeypatch, capsys):
    import hashlib
    import zipfile

    from simulators import registry

    broken = tmp_path / "toy.zip"
    broken.write_bytes(b"PK\x03\x04 not a zip file")
    entry = registry.DatasetInfo("toy", "Toy", "2", 1, "0-2", "https://example.org", None, "toy.zip", None,
                                 ("TOY/Fold1",))
    monkeypatch.setitem(registry.DATASETS, "toy", entry)
    data = tmp_path / "data"
    assert main(["datasets", "download", "toy", "--dir", str(data), "--url", broken.as_uri()]) == 1
    assert "cannot extract" in capsys.readouterr().err
    assert not (data / "toy" / "toy.zip").exists()  # a retry fetches it again
    fold = tmp_path / "src" / "TOY" / "Fold1"
    fold.mkdir(parents=True)
    for split in ("train", "vali", "test"):
        (fold / f"{split}.txt").write_text("1 qid:1 1:0.5\n0 qid:1 1:0.1\n")
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        for file in fold.iterdir():
            zf.write(file, f"TOY/Fold1/{file.name}")
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    assert main(["datasets", "download", "toy", "--dir", str(data), "--url", good.as_uri(), "--sha256", "0" * 64]) == 1
    assert "differs from the expected" in capsys.readouterr().err
    assert main(["datasets", "download", "toy", "--dir", str(data), "--url", good.as_uri(), "--sha256", digest]) == 0
    assert f"archive SHA-256: {digest}" in capsys.readouterr().out


@pytest.mark.slow
def test_an_interrupted_grid_keeps_finished_points_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    import ultr.experiment as experiment

    config = tmp_path / "grid.toml"
    config.write_text(f'name = "grid"\ndata = "{DATA}"\nsessions = [2000, 3000]\nseeds = [0]\n'
                      'learners = ["naive"]\n[training]\nranker = "linear"\nmax_steps = 5\neval_every = 5\n')
    original, calls = experiment.train, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(experiment, "train", interrupted)
    assert main(["run", str(config), "--out-root", str(tmp_path / "runs")]) == 130
    saved = json.loads((tmp_path / "runs" / "grid" / "results.json").read_text())
    assert len(saved["results"]) == 1 and not saved["complete"]  # the first point was kept
    monkeypatch.setattr(experiment, "train", original)
    capsys.readouterr()
    assert main(["run", str(config), "--out-root", str(tmp_path / "runs")]) == 0
    assert "done in an earlier run" in capsys.readouterr().out
    saved = json.loads((tmp_path / "runs" / "grid" / "results.json").read_text())
    assert len(saved["results"]) == 2 and saved["complete"]


def test_a_log_without_clicks_says_nothing_can_be_learned(tmp_path, capsys):
    from click_models.logs import atomic_write_parquet, sessions_to_table

    n = 50
    table = sessions_to_table(np.arange(n), np.zeros(n), np.tile(np.arange(3), (n, 1)), np.zeros((n, 3), bool),
                              intervention=np.ones(n, np.int32))
    atomic_write_parquet(table, tmp_path / "logs" / "part-0.parquet")
    assert main(["propensity", "--logs", str(tmp_path / "logs"), "--estimator", "randtopk", "--out",
                 str(tmp_path / "p.json")]) == 2
    assert "has no clicks" in capsys.readouterr().err
    from ultr.training import TrainConfig, train

    with pytest.raises(ValueError, match="has no clicks"):
        train(tmp_path / "logs", _dataset(), TrainConfig(learner="naive", ranker="linear", max_steps=5),
              progress=False)


@pytest.mark.parametrize("text,message", [
    ("learners = []\n", "learners: must not be empty"),
    ("seeds = [-1]\n", "seeds: must be non-negative integers"),
    ("sessions = []\n", "sessions: an empty list makes an empty grid"),
    ("[simulation]\npolicies = []\n", "policies: give at least one logging policy"),
    ("[simulation]\neta = nan\n", "eta must be a finite non-negative number"),
    ("[training]\nhidden = [0]\n", "hidden: must be integers in 1..65536"),
    ("[training]\nlearning_rate = -1.0\n", "learning_rate: must be non-negative"),
    ("metrics = ['ndcg@0']\n", "metrics[0]"),
    ("# nothing but a comment\n", "the config is empty"),
    ("[simulation]\ntemperature = 2.0\n", "simulation.temperature: has no effect"),
    ("[simulation]\npolicies = [['uniform'], ['noisy-oracle']]\nproduction_fraction = 0.5\n",
     "simulation.production_fraction: has no effect"),
])
def test_bad_toml_values_are_one_line_errors_before_any_work(tmp_path, capsys, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main(["run", str(config), "--out-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_loss_that_becomes_nan_stops_training():
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from ultr.data import ClickBatch
    from ultr.learners import Naive
    from ultr.rankers import LinearRanker
    from ultr.training import NonFiniteLossError, train_learner

    class Exploding(Naive):
        name = "exploding"

        def loss(self, features, batch):
            return jnp.sum(self.ranker(features)) * jnp.nan

    learner = Exploding(LinearRanker(3, rngs=nnx.Rngs(0)), 2)
    batch = ClickBatch(np.zeros((4, 2), np.int32), np.ones((4, 2), bool), np.ones((4, 2), bool),
                       np.ones((4, 2), np.float32))
    with pytest.raises(NonFiniteLossError, match="became nan at step 2"):
        train_learner(learner, optax.sgd(0.1), lambda epoch: [batch] * 4, jnp.ones((1, 3)), max_steps=10,
                      eval_every=2)


def test_optional_list_columns_must_match_the_documents(tmp_path, capsys):
    base = {"session_id": pa.array([0, 1], pa.int64()), "query_id": pa.array([1, 1], pa.int64()),
            "doc_ids": pa.array([[1, 2], [2, 1]], pa.list_(pa.int64())),
            "clicks": pa.array([[True, False], [False, False]])}
    for column, value, message in [
            ("labels", pa.array([[1, 0], [1]], pa.list_(pa.int8())), "session 1: labels does not list one value"),
            ("examination", pa.array([[1.0, float("nan")], [1.0, 0.5]], pa.list_(pa.float32())), "outside [0, 1]")]:
        logs = tmp_path / column
        logs.mkdir()
        pq.write_table(pa.table({**base, column: value}), logs / "part.parquet")
        from click_models.logs import read_click_log

        with pytest.raises(ClickLogError, match=re.escape(message)):
            read_click_log(logs)  # every reader that reads the column checks it


def test_the_log_cache_of_run_is_keyed_on_content_not_path():
    from ultr.experiment import _logs_key

    config = SimulationConfig()
    one = synthetic_dataset(num_queries=20, docs_per_query=5, num_features=6, seed=0)
    other = synthetic_dataset(num_queries=20, docs_per_query=5, num_features=6, seed=1)
    assert _logs_key(one, config, 100, 0) == _logs_key(one, config, 100, 0)
    assert _logs_key(one, config, 100, 0) != _logs_key(other, config, 100, 0)


def test_hand_made_logs_with_repeated_documents_or_negative_grades_are_refused(tmp_path):
    from click_models.logs import atomic_write_parquet, iter_click_log, sessions_to_table

    docs = np.array([[0, 1, 2], [3, 3, 4], [5, 6, 7]])
    atomic_write_parquet(sessions_to_table(np.arange(3), np.zeros(3), docs, np.zeros((3, 3), bool)),
                         tmp_path / "repeated" / "part-0.parquet")
    with pytest.raises(ClickLogError, match="session 1 lists doc_id 3 more than once"):
        list(iter_click_log(tmp_path / "repeated"))
    labels = np.array([[0, 1, -1], [0, 0, 0], [1, 1, 1]])
    docs[1, 1] = 8
    atomic_write_parquet(sessions_to_table(np.arange(3), np.zeros(3), docs, np.zeros((3, 3), bool), labels=labels),
                         tmp_path / "negative" / "part-0.parquet")
    with pytest.raises(ClickLogError, match="labels must be grades in 0..127, found -1..1"):
        list(iter_click_log(tmp_path / "negative", columns=["labels"]))
