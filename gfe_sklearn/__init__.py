"""Gradient flow encoding (GFE) for scikit-learn."""

from ._autoencoder import AutoEncoderBaseline
from ._gradient_flow import GradientFlowEncoder
from ._imputer import GradientFlowImputer
from ._model_file import ModelFileError
from ._persistence import trust_legacy_pickles
from ._scoring import make_hidden_entry_scorer

__version__ = "0.9.0"

__all__ = [
    "AutoEncoderBaseline",
    "GradientFlowEncoder",
    "GradientFlowImputer",
    "ModelFileError",
    "make_hidden_entry_scorer",
    "trust_legacy_pickles",
    "__version__",
]
