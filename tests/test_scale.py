"""Scale-out: the Ray engine gives the local engine's bytes and counts, survives a lost worker, and data-parallel
training over two devices equals one device (issue 15)."""

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from click_models.engine import ENGINES, LocalEngine, make_engine

ROOT = Path(__file__).resolve().parents[1]


def _digests(directory: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.parquet"))}


def test_local_engine_keeps_item_order_and_shares_arguments():
    seen = []
    engine = make_engine("local")
    assert isinstance(engine, LocalEngine) and list(ENGINES) == ["local", "ray"]
    assert engine.map(lambda item, scale: item * scale, [3, 1, 2], shared={"scale": 10}, progress=seen.append) == \
        [30, 10, 20]
    assert seen == [30, 10, 20]
    with pytest.raises(ValueError, match="--ray-address"):
        make_engine("local", address="auto")


@pytest.mark.parametrize("argv, message", [
    (["simulate", "--sessions", "10", "--out", "OUT", "--ray-address", "auto"], "--ray-address: only the ray engine"),
    (["simulate", "--sessions", "10", "--out", "OUT", "--ray-workers", "2"], "--ray-workers: only the ray engine"),
    (["propensity", "--logs", "OUT", "--estimator", "ctr", "--out", "x.json", "--engine", "spark"], "engine"),
])
def test_engine_flags_are_checked(tmp_path, capsys, argv, message):
    from ultr.cli import main

    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_file_uris_work_everywhere_and_other_filesystems_are_refused(tmp_path, capsys):
    """file:// URIs name local paths for every command (with the local guarantees); an output on a filesystem
    without atomic renames is one clear error, never a local folder named after the scheme."""
    from click_models.storage import StorageError, local_path
    from ultr.cli import main

    uri = (tmp_path / "logs").as_uri()
    assert main(["simulate", "--data", "synthetic:queries=30,docs=8,features=6,seed=1", "--sessions", "2000",
                 "--out", uri]) == 0
    assert (tmp_path / "logs" / "manifest.json").exists()
    assert main(["propensity", "--logs", uri, "--estimator", "ctr", "--out", (tmp_path / "p.json").as_uri(),
                 "--bootstrap", "0"]) == 0
    assert (tmp_path / "p.json").exists()
    assert main(["fit", "--logs", uri, "--out", (tmp_path / "fit").as_uri()]) == 0
    assert (tmp_path / "fit" / "params.json").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # outputs need atomic renames
        main(["simulate", "--sessions", "10", "--out", "mock:///bucket/logs"])
    assert exit_info.value.code == 2
    assert "atomic renames" in capsys.readouterr().err
    assert main(["fit", "--logs", "mock:///bucket/logs"]) == 2  # a log is read from any filesystem: here, none
    assert "mock:///bucket/logs: no such click log" in capsys.readouterr().err
    with pytest.raises(StorageError, match="atomic renames"):
        local_path("mock:///bucket/logs")
    assert local_path(uri) == tmp_path / "logs" and not list(tmp_path.glob("mock*"))


@pytest.fixture
def remote_log(tmp_path):
    """A simulated log copied onto an in-memory pyarrow filesystem (fsspec's memory store behind pyarrow.fs): a
    filesystem that is not the local disk and has no atomic rename, as an object store."""
    import uuid

    import fsspec
    import pyarrow.fs as pafs

    from click_models.storage import Location
    from simulators.datasets import load_dataset
    from simulators.simulation import SimulationConfig, Simulator

    local = tmp_path / "logs"
    dataset = load_dataset("synthetic:queries=30,docs=8,features=6,seed=1")
    Simulator(dataset, SimulationConfig(list_size=5, policies=("plackett-luce",)), seed=2).run(
        local, 6_000, rows_per_file=2_000, progress=False)
    memory = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("memory")))
    root = f"bucket-{uuid.uuid4().hex}/logs"
    memory.create_dir(root)
    pafs.copy_files(str(local), root, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=memory)
    return local, Location(memory, root, f"memory://{root}")


@pytest.mark.slow
def test_a_log_on_another_filesystem_reads_as_the_local_one(remote_log):
    """Counts, propensities, a click-model fit and the simulation metadata of a log read through pyarrow.fs equal
    those of the same log on the local disk."""
    from click_models.counts import ClickCounts
    from click_models.fit_log import fit_log
    from click_models.logs import click_log_files, count_clicks, count_sessions, infer_list_size
    from simulators.metadata import LogMetadata
    from ultr.estimators import estimate

    local, remote = remote_log
    assert [f.name for f in click_log_files(remote)] == [p.name for p in click_log_files(local)]
    assert (count_sessions(remote), count_clicks(remote), infer_list_size(remote)) == \
        (count_sessions(local), count_clicks(local), infer_list_size(local))
    a, b = ClickCounts.from_log(local), ClickCounts.from_log(remote)
    for field in ("doc", "rank", "impressions", "clicks"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(estimate(remote, "ctr", bootstrap=0).examination,
                                  estimate(local, "ctr", bootstrap=0).examination)
    expected, got = fit_log(local, "pbm", max_iterations=20), fit_log(remote, "pbm", max_iterations=20)
    for name, table in expected.result.tables.items():
        np.testing.assert_array_equal(got.result.tables[name], table)
    assert LogMetadata.read(remote).seed == LogMetadata.read(local).seed == 2


@pytest.mark.parametrize("learner", ["ips", "policy-aware-ips"])
@pytest.mark.slow
def test_a_learner_trains_from_a_log_on_another_filesystem_as_from_the_local_one(remote_log, learner):
    from simulators.datasets import load_dataset
    from ultr.training import TrainConfig, train

    local, remote = remote_log
    dataset = load_dataset("synthetic:queries=30,docs=8,features=6,seed=1")
    results = [train(logs, dataset, TrainConfig(learner=learner, propensities="oracle", max_steps=20, eval_every=10),
                     progress=False) for logs in (local, remote)]
    assert results[1].test == results[0].test


@pytest.mark.slow
def test_a_changed_log_on_another_filesystem_is_refused(remote_log):
    from click_models.logs import ClickLogError, click_log_files

    _, remote = remote_log
    part = remote / "part-00001.parquet"
    data = part.read_bytes()
    with remote.filesystem.open_output_stream(part.path) as stream:
        stream.write(data[:-1] + bytes([data[-1] ^ 1]))  # same size, one bit changed
    with pytest.raises(ClickLogError, match="SHA-256 differs"):
        click_log_files(remote)
    remote.filesystem.delete_file(part.path)
    with pytest.raises(ClickLogError, match="which is missing"):
        click_log_files(remote)
    remote.filesystem.delete_file((remote / "manifest.json").path)
    with pytest.raises(ClickLogError, match="without manifest.json"):
        click_log_files(remote)


# ---------------------------------------------------------------------- devices
TWO_DEVICE_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from flax import nnx
    from simulators.datasets import load_dataset
    from simulators.simulation import SimulationConfig, Simulator
    from ultr.training import TrainConfig, train

    assert jax.local_device_count() == 2, jax.devices()
    dataset = load_dataset("synthetic:queries=40,docs=12,features=6,seed=1")
    Simulator(dataset, SimulationConfig(list_size=5), seed=0).run(sys.argv[1], 6_000, progress=False)
    out = {}
    for learner in ("ips", "dla"):
        for devices in (1, 2):
            config = TrainConfig(learner=learner, ranker="mlp", hidden=(16,), devices=devices, max_steps=20,
                                 eval_every=10, batch_size=32, seed=3,
                                 propensities="oracle" if learner == "ips" else None)
            result = train(sys.argv[1], dataset, config, progress=False)
            leaves = jax.tree.leaves(nnx.state(result.model, nnx.Param))
            out[f"{learner}/{devices}"] = {"params": [np.asarray(x).tolist() for x in leaves],
                                           "ndcg": result.test["ndcg@10"]}
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_two_device_training_equals_one_device(tmp_path):
    """Data-parallel training over 2 forced host devices gives the 1-device model (same seed, same global batch);
    the flag must be set before JAX starts, hence a subprocess."""
    import json

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", TWO_DEVICE_SCRIPT, str(tmp_path / "logs")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for learner in ("ips", "dla"):
        one, two = out[f"{learner}/1"], out[f"{learner}/2"]
        assert len(one["params"]) == len(two["params"]) > 1
        for a, b in zip(one["params"], two["params"]):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
        assert two["ndcg"] == pytest.approx(one["ndcg"], abs=1e-6)


@pytest.mark.slow
def test_too_many_devices_is_a_clear_error():
    from ultr.training import data_parallel_mesh

    assert data_parallel_mesh(1) is None
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        data_parallel_mesh(64)


@pytest.mark.slow
def test_two_processes_joined_by_jax_distributed_train_like_one(tmp_path):
    """`ultr train` started on two "hosts" (processes on localhost joined by jax.distributed, one CPU device
    each) trains the model of one process: the same test metrics, written once by process 0."""
    import json
    import socket

    from ultr.cli import main

    data = "synthetic:queries=40,docs=12,features=6,seed=1"
    assert main(["simulate", "--data", data, "--list-size", "5", "--sessions", "6000", "--out",
                 str(tmp_path / "logs")]) == 0
    common = ["--logs", str(tmp_path / "logs"), "--data", data, "--learner", "ips", "--propensities", "oracle",
              "--ranker", "mlp", "--hidden", "16", "--max-steps", "20", "--eval-every", "10", "--batch-size", "32",
              "--seed", "3"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    distributed = ["--devices", "2", "--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2"]
    processes = [subprocess.Popen([sys.executable, "-m", "ultr", "train", *common, "--out", str(tmp_path / "multi"),
                                   *distributed, "--process-id", str(i)], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    single = subprocess.run([sys.executable, "-m", "ultr", "train", *common, "--out", str(tmp_path / "one")], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    outputs = [p.communicate(timeout=600) for p in processes]
    assert single.returncode == 0, single.stderr[-2000:]
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())["test"]
    multi = json.loads((tmp_path / "multi" / "metrics.json").read_text())["test"]
    assert multi == pytest.approx(one, abs=1e-6)
    assert "wrote" in outputs[0][0] and "wrote" not in outputs[1][0]  # process 0 writes, process 1 does not


@pytest.mark.slow
def test_distributed_flags_are_checked(tmp_path, capsys):
    from ultr.cli import main

    base = ["train", "--data", "synthetic", "--learner", "skyline", "--out", str(tmp_path / "o")]
    for extra, message in ((["--process-id", "1"], "go with --coordinator-address"),
                           (["--coordinator-address", "127.0.0.1:1"], "needs --num-processes and --process-id"),
                           (["--coordinator-address", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
                            "must be below")):
        with pytest.raises(SystemExit) as exit_info:
            main(base + extra)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


# ---------------------------------------------------------------------- Ray
# (last in the file: the module's Ray instance then never runs beside the jax.distributed processes above)
@pytest.fixture(scope="module")
def ray_cluster():
    import warnings

    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
    with warnings.catch_warnings():  # Ray starts its daemons by fork+exec, which JAX warns about
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def simulation_setup(tmp_path_factory):
    from simulators.datasets import load_dataset
    from simulators.simulation import SimulationConfig

    dataset = load_dataset("synthetic:queries=40,docs=15,features=6,seed=2")
    config = SimulationConfig(click_model="pbm", list_size=5, policies=("plackett-luce",), intervention="swap",
                              intervention_rate=0.5)
    return dataset, config, tmp_path_factory.mktemp("scale")


def _simulate(setup, name, engine=None, sessions=9_000):
    from simulators.simulation import Simulator

    dataset, config, root = setup
    out = root / name
    Simulator(dataset, config, seed=5).run(out, sessions, chunk_size=1_000, rows_per_file=4_000, progress=False,
                                           engine=engine)
    return out


@pytest.mark.ray
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.slow
def test_ray_simulation_is_byte_identical_to_local(ray_cluster, simulation_setup, workers):
    from click_models.engine import RayEngine
    from click_models.logs import click_log_files

    local = simulation_setup[2] / "local"
    if not local.exists():
        _simulate(simulation_setup, "local")
    out = _simulate(simulation_setup, f"ray-{workers}", RayEngine(workers=workers))
    assert len(click_log_files(out)) == 3  # the manifest lists and verifies every part
    assert _digests(out) == _digests(local)
    assert not list(out.glob(".*"))  # no temporary file left behind


@pytest.mark.ray
@pytest.mark.slow
def test_ray_counts_estimates_and_fits_equal_local(ray_cluster, simulation_setup):
    from click_models.counts import ClickCounts
    from click_models.engine import RayEngine
    from click_models.fit_log import fit_log
    from ultr.estimators import estimate

    logs = simulation_setup[2] / "local"
    if not logs.exists():
        _simulate(simulation_setup, "local")
    engine = RayEngine(workers=2)
    local = ClickCounts.from_log(logs, by_intervention=True)
    distributed = ClickCounts.from_log(logs, by_intervention=True, engine=engine)
    for field in ("doc", "rank", "previous", "intervention", "impressions", "clicks"):
        np.testing.assert_array_equal(getattr(local, field), getattr(distributed, field))
    assert local.sessions == distributed.sessions
    np.testing.assert_array_equal(local.documents.doc_ids, distributed.documents.doc_ids)
    for estimator in ("ctr", "swap"):
        expected = estimate(logs, estimator, bootstrap=0)
        np.testing.assert_array_equal(estimate(logs, estimator, bootstrap=0, engine=engine).examination,
                                      expected.examination)
    for model in ("pbm", "ubm"):
        expected, got = fit_log(logs, model, max_iterations=30), fit_log(logs, model, max_iterations=30, engine=engine)
        for name, table in expected.result.tables.items():
            np.testing.assert_allclose(got.result.tables[name], table, rtol=1e-12, atol=0)
        assert got.metrics["held_out_log_likelihood"] == pytest.approx(expected.metrics["held_out_log_likelihood"],
                                                                        rel=1e-12)
    with pytest.raises(ValueError, match="trains a ranker"):
        estimate(logs, "dla", engine=engine)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_baidu_conversion_equals_local(ray_cluster, tmp_path):
    """A task per raw partition: the same logs, features, corpus statistics and id table as the local pool."""
    from click_models.engine import RayEngine
    from simulators.baidu_convert import convert
    from simulators.baidu_synthetic import write_partitions

    write_partitions(tmp_path / "raw", num_partitions=3, sessions_per_partition=60, seed=4)
    local = convert(tmp_path / "raw", tmp_path / "local", workers=1)
    distributed = convert(tmp_path / "raw", tmp_path / "ray", engine=RayEngine(workers=2))
    assert distributed["total"] == local["total"] and distributed["corpus"] == local["corpus"]
    for folder in ("logs", "features"):
        assert _digests(tmp_path / "ray" / folder) == _digests(tmp_path / "local" / folder)
    for name in ("corpus.parquet", "doc_ids.parquet"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


@pytest.mark.ray
@pytest.mark.slow
def test_ray_grid_points_give_the_local_results(ray_cluster, tmp_path):
    """ultr run with a Ray task per (grid point, seed): the same result table, in grid order; points that differ
    only in training share one log, simulated once."""
    from click_models.engine import RayEngine
    from ultr.experiment import run_experiment

    config = {"name": "grid", "data": "synthetic:queries=30,docs=8,features=6,seed=1", "seeds": [0, 1],
              "sessions": 3_000, "learners": ["naive", "ips"], "estimators": ["ctr"], "metrics": ["ndcg@10"],
              "simulation": {"click_model": "pbm"},
              "training": {"max_steps": 20, "eval_every": 10, "propensities": "oracle", "learning_rate": [0.05, 0.1]}}
    local = run_experiment(dict(config), tmp_path / "local", progress=False)
    lines = []
    distributed = run_experiment(dict(config), tmp_path / "ray", progress=False, log=lines.append,
                                 engine=RayEngine(workers=2))
    assert len(local) == 8
    assert distributed.equals(local)
    assert (tmp_path / "ray" / "grid" / "results.csv").read_text() == \
        (tmp_path / "local" / "grid" / "results.csv").read_text()
    assert sum("simulated" in line for line in lines) == 2  # one log per seed, shared by both learning rates


def _refuse_part_two(item):
    from click_models.logs import ClickLogError

    if item == 2:
        raise ClickLogError(f"part {item}: a bad column")
    return item


@pytest.mark.ray
def test_a_task_error_reaches_the_caller_as_itself(ray_cluster):
    """Bad input found by a task is the task's own exception (one line on the command line), not Ray's wrapper
    with a remote traceback; it is not retried."""
    import ray.cloudpickle

    from click_models.engine import RayEngine
    from click_models.logs import ClickLogError

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with pytest.raises(ClickLogError) as error:
        RayEngine(workers=2).map(_refuse_part_two, [1, 2, 3])
    assert str(error.value) == "part 2: a bad column"


def _die_once(item, *, marker: str, task, **shared):
    """Kill this worker process the first time it runs part 1 (a lost node), then work normally."""
    if item[0] == 1 and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return task(item, **shared)


@pytest.mark.ray
@pytest.mark.slow
def test_a_lost_worker_task_is_retried_and_the_log_is_complete(ray_cluster, simulation_setup, tmp_path):
    import ray.cloudpickle

    from click_models.engine import RayEngine
    from click_models.logs import click_log_files

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module

    class LosingEngine(RayEngine):
        def map(self, fn, items, *, shared=None, progress=None):
            return super().map(_die_once, items, shared={**shared, "task": fn, "marker": str(tmp_path / "died")},
                               progress=progress)

    local = simulation_setup[2] / "local"
    if not local.exists():
        _simulate(simulation_setup, "local")
    out = _simulate(simulation_setup, "ray-lost", LosingEngine(workers=2))
    assert (tmp_path / "died").exists()  # a worker did die
    assert len(click_log_files(out)) == 3
    assert _digests(out) == _digests(local)


def test_ray_engine_without_ray_is_one_clear_error(monkeypatch):
    import builtins

    from click_models.engine import RayUnavailableError

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RayUnavailableError, match=r"pip install -e '.\[ray\]'"):
        make_engine("ray")
