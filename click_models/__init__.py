"""Click models as JAX distributions over click vectors.

See :mod:`click_models.models` for the models (registered in :data:`CLICK_MODELS`),
:mod:`click_models.logs` for the click-log format, :mod:`click_models.fitting`
for EM, counting and gradient fitting, :mod:`click_models.fit_log` for fitting a
log file, and :mod:`click_models.evaluation` for log-likelihood and perplexity.
"""

from ._base import ChainClickModel, ClickModel, IndependentClickModel, enumerate_click_vectors
from .evaluation import evaluate
from .fit_log import FittedLog, fit_log
from .fitting import FitResult, LogSource, Prior, SessionBatch, fit_counting, fit_em, fit_gradient
from .identifiability import RankGraph, rank_graph, rank_graph_of_log
from .labels import attraction_from_labels, satisfaction_from_labels
from .logs import ClickLogBatch, ClickLogError, DocumentIndex, iter_click_log, read_click_log, sessions_to_table
from .models import CCM, CLICK_MODELS, DBN, DCM, MODELS, PBM, SDBN, UBM, Cascade, TrustBias
from .registry import Registry, UnknownNameError

__all__ = [
    "CCM",
    "CLICK_MODELS",
    "DBN",
    "DCM",
    "MODELS",
    "PBM",
    "SDBN",
    "UBM",
    "Cascade",
    "ChainClickModel",
    "ClickLogBatch",
    "ClickLogError",
    "ClickModel",
    "DocumentIndex",
    "FitResult",
    "FittedLog",
    "IndependentClickModel",
    "LogSource",
    "Prior",
    "RankGraph",
    "Registry",
    "SessionBatch",
    "TrustBias",
    "UnknownNameError",
    "attraction_from_labels",
    "enumerate_click_vectors",
    "evaluate",
    "fit_counting",
    "fit_em",
    "fit_gradient",
    "fit_log",
    "iter_click_log",
    "rank_graph",
    "rank_graph_of_log",
    "read_click_log",
    "satisfaction_from_labels",
    "sessions_to_table",
]
