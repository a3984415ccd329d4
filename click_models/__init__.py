"""Click models as JAX distributions over click vectors.

See :mod:`click_models.models` for the models, :mod:`click_models.logs` for the
click-log format, :mod:`click_models.fitting` for EM, counting and gradient
fitting, and :mod:`click_models.evaluation` for log-likelihood and perplexity.
"""

from ._base import ClickModel, ChainClickModel, IndependentClickModel, enumerate_click_vectors
from .models import CCM, DBN, DCM, MODELS, PBM, SDBN, UBM, Cascade, TrustBias

__all__ = [
    "CCM",
    "DBN",
    "DCM",
    "MODELS",
    "PBM",
    "SDBN",
    "UBM",
    "Cascade",
    "ChainClickModel",
    "ClickModel",
    "IndependentClickModel",
    "TrustBias",
    "enumerate_click_vectors",
]
