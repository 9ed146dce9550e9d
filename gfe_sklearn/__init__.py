"""Gradient flow encoding (GFE) for scikit-learn."""

from ._autoencoder import AutoEncoderBaseline
from ._gradient_flow import GradientFlowEncoder

__version__ = "0.2.0"

__all__ = ["AutoEncoderBaseline", "GradientFlowEncoder", "__version__"]
