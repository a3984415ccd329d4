"""Click simulators: turn relevance-labelled rankings into biased click logs.

* :mod:`simulators.letor`: LETOR/SVMlight reader with file:line errors;
* :mod:`simulators.datasets`: splits, Parquet cache, normalisation, the synthetic dataset;
* :mod:`simulators.registry`: the public datasets (:data:`DATASETS`) and their download;
* :mod:`simulators.policies`: logging policies (:data:`POLICIES`);
* :mod:`simulators.interventions`: randomisations of the shown ranking (:data:`INTERVENTIONS`);
* :mod:`simulators.simulation`: the simulator that streams click logs to Parquet;
* :mod:`simulators.metadata`: the metadata of a simulated log (``simulation.json``);
* :mod:`simulators.toy`: toy logs with known click-model parameters.

Builds on :mod:`click_models` (never the other way round).
"""

from .datasets import Dataset, RankingData, load_dataset, load_letor_dataset, normalize_features, synthetic_dataset
from .interventions import INTERVENTIONS, Intervention
from .letor import LetorFormatError, read_letor
from .metadata import LogMetadata
from .policies import POLICIES, Policy, PolicyFamily, make_policy
from .registry import DATASETS, DatasetInfo, DownloadError
from .simulation import SimulationConfig, Simulator, session_click_model
from .toy import DLA_EXAMINATION, simulate_toy_log, toy_session_batches, true_parameters, write_toy_log

__all__ = [
    "DATASETS",
    "DLA_EXAMINATION",
    "Dataset",
    "DatasetInfo",
    "DownloadError",
    "INTERVENTIONS",
    "Intervention",
    "LetorFormatError",
    "LogMetadata",
    "POLICIES",
    "Policy",
    "PolicyFamily",
    "RankingData",
    "SimulationConfig",
    "Simulator",
    "load_dataset",
    "load_letor_dataset",
    "make_policy",
    "normalize_features",
    "read_letor",
    "session_click_model",
    "simulate_toy_log",
    "synthetic_dataset",
    "toy_session_batches",
    "true_parameters",
    "write_toy_log",
]
