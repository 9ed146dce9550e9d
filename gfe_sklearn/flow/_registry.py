"""The only lists of valid names: solvers, flows, gradient modes, losses, stop rules, ...

Estimators build their parameter constraints from these dictionaries and tests parametrise
over them, so adding an entry here is all it takes to expose a new variant.
"""

from ._adaptive import Dopri5
from ._adjoint import APPROX, FULL, UNROLLED
from ._amd import AMD
from ._fields import GradientFlow, NesterovFlow, constant_alpha, exponential_alpha
from ._fixed import GRIDS, RK4, Euler
from ._lbfgs import LBFGS
from ._losses import BCE, MSE
from ._stopping import STOP_RULES

SOLVERS = {solver.name: solver for solver in (AMD, Euler, RK4, Dopri5, LBFGS)}
FLOWS = {"gradient": GradientFlow, "nesterov": NesterovFlow}
ADJOINTS = {mode.name: mode for mode in (APPROX, FULL, UNROLLED)}
LOSSES = {"bce": BCE, "mse": MSE}
ALPHAS = {"constant": constant_alpha, "exp": exponential_alpha}

__all__ = ["SOLVERS", "FLOWS", "ADJOINTS", "LOSSES", "ALPHAS", "GRIDS", "STOP_RULES"]
