"""Click simulators: turn rankings with known relevance into biased click logs.

Builds on :mod:`click_models` (never the other way round).
"""

from .toy import DLA_EXAMINATION, simulate_toy_log, toy_session_batches, true_parameters

__all__ = ["DLA_EXAMINATION", "simulate_toy_log", "toy_session_batches", "true_parameters"]
