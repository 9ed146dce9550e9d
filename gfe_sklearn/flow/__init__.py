"""The gradient-flow engine: plain PyTorch, no scikit-learn.

``encode`` integrates the encoding flow of a batch, per sample; the registries are the only
lists of valid solver, flow, gradient-mode, loss, schedule, grid and stop-rule names.
"""

from ._encode import (
    check_combination,
    encode,
    endpoint_conflicts,
    horizon,
    solver_options,
)
from ._fixed import StiffnessWarning
from ._losses import Loss
from ._registry import ADJOINTS, ALPHAS, FLOWS, GRIDS, LOSSES, SOLVERS, STOP_RULES
from ._result import FlowResult
from ._rows import RowLayoutWarning

__all__ = [
    "encode",
    "solver_options",
    "horizon",
    "check_combination",
    "endpoint_conflicts",
    "FlowResult",
    "Loss",
    "StiffnessWarning",
    "RowLayoutWarning",
    "SOLVERS",
    "FLOWS",
    "ADJOINTS",
    "LOSSES",
    "ALPHAS",
    "GRIDS",
    "STOP_RULES",
]
