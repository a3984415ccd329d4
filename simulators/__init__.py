"""Click simulators: turn relevance-labelled rankings into biased click logs.

* :mod:`simulators.letor`: LETOR/SVMlight reader with file:line errors;
* :mod:`simulators.datasets`: splits, Parquet cache, normalisation, the synthetic dataset;
* :mod:`simulators.registry`: the public datasets and their download;
* :mod:`simulators.policies`: logging policies;
* :mod:`simulators.simulation`: the simulator that streams click logs to Parquet;
* :mod:`simulators.toy`: toy logs with known click-model parameters.

Builds on :mod:`click_models` (never the other way round).
"""

from .datasets import Dataset, RankingData, load_dataset, load_letor_dataset, normalize_features, synthetic_dataset
from .letor import LetorFormatError, read_letor
from .simulation import SimulationConfig, Simulator
from .toy import DLA_EXAMINATION, simulate_toy_log, toy_session_batches, true_parameters

__all__ = [
    "DLA_EXAMINATION",
    "Dataset",
    "LetorFormatError",
    "RankingData",
    "SimulationConfig",
    "Simulator",
    "load_dataset",
    "load_letor_dataset",
    "normalize_features",
    "read_letor",
    "simulate_toy_log",
    "synthetic_dataset",
    "toy_session_batches",
    "true_parameters",
]
