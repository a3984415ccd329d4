"""Registries: every entry reachable from --help, ultr run configs and the docs; extension by one class."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from click_models import CLICK_MODELS, PBM
from click_models.registry import Registry, UnknownNameError
from simulators.interventions import INTERVENTIONS
from simulators.policies import POLICIES
from simulators.registry import DATASETS
from ultr.cli import build_parser, main
from ultr.estimators import ESTIMATORS, Estimator, PropensityEstimate, register_estimator
from ultr.experiment import ConfigError, validate
from ultr.learners import LEARNERS, Learner, register_learner
from ultr.losses import LOSSES, softmax_loss
from ultr.optimizers import OPTIMIZERS
from ultr.options import option
from ultr.rankers import RANKERS

ROOT = Path(__file__).resolve().parents[1]


def _help(*command):
    import os

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "1000"  # no line breaks inside hyphenated names
    try:
        parser = build_parser()
        subparsers = next(a for a in parser._actions if a.dest == "command")
        sub = subparsers.choices[command[0]]
        if len(command) > 1:
            sub = next(a for a in sub._actions if a.dest == "datasets_command").choices[command[1]]
        return sub.format_help()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def test_registry_lookup_aliases_and_errors():
    registry = Registry("colour")
    registry.add("dark-red", "#800", aliases=("maroon",))
    assert registry["Dark_Red"] == "#800" and registry["maroon"] == "#800"
    assert registry.canonical("DARK_RED") == "dark-red"
    with pytest.raises(UnknownNameError, match="unknown colour 'blue'; choose from dark-red"):
        registry["blue"]
    with pytest.raises(UnknownNameError, match="--colour: unknown 'blue'"):
        registry.lookup("blue", "--colour")
    with pytest.raises(ValueError, match="already registered"):
        registry.add("maroon", "#801")


REGISTRIES = {
    "click model": (CLICK_MODELS, [("fit",), ("simulate",)]),
    "policy": (POLICIES, [("simulate",)]),
    "intervention": (INTERVENTIONS, [("simulate",)]),
    "estimator": (ESTIMATORS, [("propensity",)]),
    "learner": (LEARNERS, [("train",)]),
    "loss": (LOSSES, [("train",)]),
    "optimizer": (OPTIMIZERS, [("train",)]),
    "ranker": (RANKERS, [("train",)]),
}


@pytest.mark.parametrize("concept", REGISTRIES)
def test_every_entry_is_reachable_from_help(concept):
    registry, commands = REGISTRIES[concept]
    for command in commands:
        text = " ".join(_help(*command).split())
        for name in registry:
            assert name in text, (concept, name, command)


def test_every_dataset_is_listed(capsys, tmp_path):
    assert main(["datasets", "list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in DATASETS)


def test_every_learner_option_is_a_flag():
    text = _help("train")
    for cls in LEARNERS.values():
        for field in dataclasses.fields(cls.Options):
            assert "--" + field.name.replace("_", "-") in text, (cls.name, field.name)


def _base_config(**training):
    return {"name": "x", "data": "synthetic", "sessions": 1000, "seeds": [0], "learners": ["naive"],
            "simulation": {}, "training": dict(training)}


@pytest.mark.parametrize("concept", REGISTRIES)
def test_every_entry_is_accepted_by_run_configs(concept):
    registry, _ = REGISTRIES[concept]
    for name in registry:
        config = _base_config()
        if concept == "click model":
            config["simulation"]["click_model"] = name
        elif concept == "policy":
            config["simulation"]["policies"] = [name]
        elif concept == "intervention":
            config["simulation"]["intervention"] = name
        elif concept == "estimator":
            config["estimators"] = [name]
            # a simulation that gives the estimator what it needs
            from simulators.simulation import SimulationConfig

            candidates = [{}, {"intervention": "randtopk"}, {"intervention": "swap", "intervention_rate": 0.5}]
            config["simulation"] = next(c for c in candidates
                                        if ESTIMATORS[name].simulation_problem(SimulationConfig(**c)) is None)
        elif concept == "learner":
            config["learners"] = [name]
            if LEARNERS[name].takes_propensities():
                config["training"]["propensities"] = "oracle"
        elif concept == "loss":
            config["training"]["loss"] = name
        elif concept == "optimizer":
            config["training"]["optimizer"] = name
        elif concept == "ranker":
            config["training"]["ranker"] = name
        assert validate(config), (concept, name)


def test_run_configs_reject_estimators_the_simulation_cannot_feed_before_any_work():
    with pytest.raises(ConfigError, match=r"estimators\[0\]: the randtopk estimator needs RandTop-k sessions"):
        validate({**_base_config(), "estimators": ["randtopk"]})
    with pytest.raises(ConfigError, match=r"training.propensities \(ips\): the swap estimator needs swap sessions"):
        validate({**_base_config(propensities="swap"), "learners": ["ips"],
                  "simulation": {"intervention": "randtopk"}})
    with pytest.raises(ConfigError, match="training.propensities: .*not oracle, an estimator"):
        validate({**_base_config(propensities="oracel"), "learners": ["ips"]})
    with pytest.raises(ConfigError, match="training.seed: set by the experiment; use the top-level 'seeds'"):
        validate(_base_config(seed=3))
    with pytest.raises(ConfigError, match="intervention_k: the absent intervention does not use it"):
        validate({**_base_config(), "simulation": {"intervention_k": 3}})


def test_options_of_one_learner_table_may_be_grids():
    from ultr.experiment import grid, resolve

    config = {**_base_config(dla={"learning_rate": [0.01, 0.1]}), "learners": ["dla"]}
    points = validate(config)
    assert [p["training.dla.learning_rate"] for p in points] == [0.01, 0.1]
    assert resolve(config, points[1])["training"]["dla"]["learning_rate"] == 0.1
    assert grid(config) == points


def test_run_configs_reject_options_no_learner_uses():
    with pytest.raises(ConfigError, match="training.clip: none of the learners uses it"):
        validate(_base_config(clip=0.1))
    with pytest.raises(ConfigError, match=r"training.dla.clip: not an option of the dla learner"):
        validate({**_base_config(dla={"clip": 0.1}), "learners": ["dla"]})
    with pytest.raises(ConfigError, match=r"training.propensities: .*propensities = \"oracle\""):
        validate({**_base_config(), "learners": ["ips"]})
    # a shared key applies to the learners that use it
    assert validate({**_base_config(clip=0.1, propensities="oracle"), "learners": ["naive", "ips"]})


def test_the_docs_reference_is_generated_from_the_registries():
    from ultr.reference import markdown

    page = (ROOT / "docs" / "reference.md").read_text()
    assert page == markdown(), "regenerate: python -m ultr.reference > docs/reference.md"
    for registry, _ in REGISTRIES.values():
        for name in registry:
            assert f"`{name}`" in page
    from ultr.metrics import METRICS

    for name in [*DATASETS, *METRICS]:
        assert f"`{name}`" in page


def test_every_package_exports_a_curated_api():
    import click_models
    import simulators
    import ultr

    for package in (click_models, simulators, ultr):
        assert package.__all__ and all(hasattr(package, name) for name in package.__all__), package.__name__


@pytest.mark.slow
def test_importing_ultr_sets_no_global_plotting_state():
    code = ("import matplotlib; backend = matplotlib.get_backend(); before = dict(matplotlib.rcParams); "
            "import ultr, ultr.experiment, ultr.plots, ultr.propensity, ultr.cli; "
            "assert matplotlib.get_backend() == backend, 'backend switched'; "
            "changed = [k for k, v in matplotlib.rcParams.items() if before.get(k) != v]; "
            "assert not changed, changed")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------- extension: one class + registration
@pytest.fixture
def throwaway_learner():
    @register_learner
    class Tempered(Learner):
        """Clicks as labels with tempered scores (a throwaway learner of the tests)."""

        name = "tempered"

        @dataclasses.dataclass(frozen=True)
        class Options:
            temperature: float = option(1.0, "tempered: divides the scores", check=lambda v: v > 0,
                                        requirement="positive")

        def __init__(self, ranker, list_size, loss=None, temperature: float = 1.0):
            super().__init__(ranker, list_size, loss)
            self.temperature = temperature

        def loss(self, features, batch):
            return softmax_loss(self.ranker(features) / self.temperature, batch.clicks.astype(jnp.float32),
                                where=batch.mask)

    yield Tempered
    LEARNERS.remove("tempered")


@pytest.fixture(scope="module")
def small_logs(tmp_path_factory):
    from simulators.datasets import synthetic_dataset
    from simulators.simulation import SimulationConfig, Simulator

    dataset = synthetic_dataset(num_queries=60, docs_per_query=10, num_features=8, seed=1)
    logs = tmp_path_factory.mktemp("logs")
    Simulator(dataset, SimulationConfig(intervention="randtopk", intervention_rate=0.5), seed=0).run(
        logs, 20_000, progress=False)
    return "synthetic:queries=60,docs=10,features=8,seed=1", logs


TRAIN = ["--ranker", "linear", "--max-steps", "20", "--eval-every", "10"]


@pytest.mark.slow
def test_a_learner_registered_in_a_test_trains_from_the_command_line(throwaway_learner, small_logs, tmp_path):
    data, logs = small_logs
    assert "--temperature" in _help("train") and "tempered" in _help("train")
    out = tmp_path / "tempered"
    assert main(["train", "--logs", str(logs), "--data", data, "--learner", "tempered", "--temperature", "2.5",
                 *TRAIN, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["learner"] == "tempered" and metrics["config"]["learner_options"] == {"temperature": 2.5}
    assert 0 < metrics["test"]["ndcg@10"] <= 1
    with pytest.raises(SystemExit, match="--temperature: must be positive"):
        main(["train", "--logs", str(logs), "--data", data, "--learner", "tempered", "--temperature", "-1",
              *TRAIN, "--out", str(tmp_path / "bad")])
    with pytest.raises(SystemExit, match="--temperature: not an option of the naive learner"):
        main(["train", "--logs", str(logs), "--data", data, "--learner", "naive", "--temperature", "2",
              *TRAIN, "--out", str(tmp_path / "bad")])


@pytest.mark.slow
def test_an_estimator_registered_in_a_test_runs_from_the_command_line(small_logs, tmp_path, capsys):
    @register_estimator
    class Flat(Estimator):
        """Examination 1 at every rank (a throwaway estimator of the tests)."""

        name = "flat"

        def estimate(self, counts, *, bootstrap=0, seed=0):
            return PropensityEstimate(self.name, np.ones(counts.list_size), None, None, counts.num_sessions)

    try:
        _, logs = small_logs
        out = tmp_path / "flat.json"
        assert main(["propensity", "--logs", str(logs), "--estimator", "flat", "--out", str(out)]) == 0
        assert json.loads(out.read_text())["examination"] == [1.0] * 10
    finally:
        ESTIMATORS.remove("flat")


@pytest.mark.slow
def test_a_click_model_registered_in_a_test_simulates_without_other_edits(tmp_path):
    from simulators.datasets import synthetic_dataset
    from simulators.simulation import SimulationConfig, Simulator

    @CLICK_MODELS.register("half-pbm")
    class HalfPBM(PBM):
        """PBM that examines every rank with half the default examination."""

        name = "half-pbm"

        @classmethod
        def simulation_defaults(cls, examination):
            return {"examination": 0.5 * np.asarray(examination)}

    try:
        dataset = synthetic_dataset(num_queries=30, docs_per_query=10, num_features=6, seed=0)
        summary = Simulator(dataset, SimulationConfig(click_model="half-pbm"), seed=0).run(
            tmp_path / "logs", 5_000, progress=False)
        metadata = json.loads((tmp_path / "logs" / "simulation.json").read_text())
        np.testing.assert_allclose(metadata["rank_parameters"]["examination"][0], 0.34)
        assert summary["sessions"] == 5_000
    finally:
        CLICK_MODELS.remove("half-pbm")


# ---------------------------------------------------------------------- needs and flags of every learner
@pytest.mark.parametrize("learner", list(LEARNERS))
def test_propensities_are_needed_exactly_by_the_learners_that_use_them(learner):
    from ultr.options import OptionError
    from ultr.training import train_config

    cls = LEARNERS[learner]
    if cls.takes_propensities():
        with pytest.raises(OptionError, match=f"the {learner} learner needs .*give --propensities"):
            train_config({"learner": learner})
        assert train_config({"learner": learner, "propensities": "oracle"}).propensities == "oracle"
    else:
        with pytest.raises(OptionError, match="--propensities|propensities"):
            train_config({"learner": learner, "propensities": "oracle"}, name=lambda k: "--" + k)


@pytest.mark.parametrize("learner", list(LEARNERS))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_loss_is_accepted_exactly_where_the_learner_uses_it(learner, loss):
    from ultr.options import OptionError
    from ultr.training import train_config

    cls = LEARNERS[learner]
    values = {"learner": learner, "loss": loss}
    if cls.takes_propensities():
        values["propensities"] = "oracle"
    if cls.takes_loss() and loss in cls.losses:
        assert train_config(values).loss == loss
    else:
        with pytest.raises(OptionError, match="loss"):
            train_config(values, name=lambda k: "--" + k)


@pytest.mark.parametrize("flags,message", [
    (["--learner", "dla", "--clip", "0.1"], "--clip: not an option of the dla learner"),
    (["--learner", "naive", "--ranker", "linear", "--hidden", "8"], "--hidden: the linear ranker does not use it"),
    (["--learner", "naive", "--optimizer", "sgd", "--weight-decay", "0.1"], "--weight-decay: the sgd optimiser"),
    (["--learner", "naive", "--bias-learning-rate", "1"], "--bias-learning-rate: the naive learner has no bias model"),
    (["--learner", "dla", "--loss", "sigmoid"], "--loss: the dla learner has a fixed loss"),
    (["--learner", "ips", "--propensities", "oracle", "--loss", "pairwise"], "loss: the ips learner accepts"),
    (["--learner", "ips"], "needs examination propensities per rank: give --propensities"),
    (["--learner", "dla", "--propensities", "oracle"], "--propensities: the dla learner does not use"),
    (["--learner", "logging-policy", "--learning-rate", "0.1"], "the logging-policy learner is not trained"),
    (["--learner", "naive", "--dropout", "1.5"], "--dropout: must be in [0, 1)"),
    (["--learner", "naive", "--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
])
def test_unused_or_bad_flags_are_errors(small_logs, tmp_path, capsys, flags, message):
    data, logs = small_logs
    with pytest.raises(SystemExit) as raised:
        main(["train", "--logs", str(logs), "--data", data, *flags, "--out", str(tmp_path / "x")])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("source", ["oracle", "randtopk", "file"])
@pytest.mark.slow
def test_each_propensity_source_reaches_ips_and_is_recorded(small_logs, tmp_path, source):
    data, logs = small_logs
    value = source
    if source == "file":
        value = str(tmp_path / "p.json")
        Path(value).write_text(json.dumps({"examination": [1.0, 0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1]}))
    out = tmp_path / "ips"
    assert main(["train", "--logs", str(logs), "--data", data, "--learner", "ips", "--propensities", value,
                 *TRAIN, "--out", str(out)]) == 0
    recorded = json.loads((out / "metrics.json").read_text())["propensity_source"]
    assert recorded["source"] == value
    assert recorded["kind"] == {"oracle": "oracle", "randtopk": "estimator", "file": "file"}[source]
    if source == "file":
        assert recorded["examination"][1] == 0.9
    if source == "randtopk":
        assert len(recorded["examination"]) == 10 and recorded["examination"][0] == 1.0


@pytest.mark.slow
def test_oracle_propensities_need_a_simulated_log(small_logs, tmp_path, capsys):
    import shutil

    data, logs = small_logs
    real = tmp_path / "real"
    real.mkdir()
    for part in logs.glob("*.parquet"):
        shutil.copy(part, real / part.name)  # the parts without simulation.json: a log never simulated
    with pytest.raises(SystemExit):
        main(["train", "--logs", str(real), "--data", data, "--learner", "ips", "--propensities", "oracle",
              *TRAIN, "--out", str(tmp_path / "x")])
    assert "not a simulated log" in capsys.readouterr().err
    # learners that need no truth train on a log without metadata
    assert main(["train", "--logs", str(real), "--data", data, "--learner", "naive", *TRAIN,
                 "--out", str(tmp_path / "naive")]) == 0


@pytest.mark.slow
def test_affine_needs_click_noise_and_propensity_lengths_are_checked(small_logs, tmp_path, capsys):
    data, logs = small_logs
    run = ["train", "--logs", str(logs), "--data", data, *TRAIN]
    with pytest.raises(SystemExit):  # randtopk estimates examination only: no epsilon+/- for affine
        main([*run, "--learner", "affine", "--propensities", "randtopk", "--out", str(tmp_path / "a")])
    assert "needs epsilon_pos and epsilon_neg" in capsys.readouterr().err
    long = tmp_path / "long.json"  # more ranks than the log shows: cut to the list size
    long.write_text(json.dumps({"examination": [1.0] * 12, "epsilon_pos": [0.9] * 12, "epsilon_neg": [0.1] * 12}))
    assert main([*run, "--learner", "affine", "--propensities", str(long), "--out", str(tmp_path / "b")]) == 0
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"examination": [1.0, 0.5]}))
    with pytest.raises(SystemExit):
        main([*run, "--learner", "ips", "--propensities", str(short), "--out", str(tmp_path / "c")])
    assert "examination covers 2 ranks; the logs show 10" in capsys.readouterr().err


@pytest.mark.slow
def test_skyline_rejects_logs_and_paird_reports_position_biases_by_name(small_logs, tmp_path, capsys):
    data, logs = small_logs
    with pytest.raises(SystemExit):
        main(["train", "--logs", str(logs), "--data", data, "--learner", "skyline", *TRAIN,
              "--out", str(tmp_path / "s")])
    assert "--logs: the skyline learner does not use click logs" in capsys.readouterr().err
    out = tmp_path / "paird"
    assert main(["train", "--logs", str(logs), "--data", data, "--learner", "paird", *TRAIN, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["propensities"] is None and len(metrics["position_biases"]) == 10
    assert not (out / "propensities.json").exists()
