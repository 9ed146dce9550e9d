"""Type aliases of the public signatures, for type checkers (imported under TYPE_CHECKING)."""

from os import PathLike

import numpy as np
import scipy.sparse as sp
import torch
from numpy.typing import ArrayLike

# What fit, transform and score take: arrays, frames, tensors, CSR matrices.
MatrixLike = ArrayLike | sp.spmatrix | sp.sparray
Device = str | torch.device
FilePath = str | PathLike
RandomStateLike = int | np.random.RandomState | None
