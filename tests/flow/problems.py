"""Problems with known solutions for the engine's tests."""

import numpy as np
import torch

from gfe_sklearn.flow import SOLVERS


def goes_to_endpoint(solver):
    """Solvers with no flow time (``'lbfgs'``): no horizon, gradient flow only."""
    return SOLVERS[solver].goes_to_endpoint


def linear_decoder(n_components, n_features, eigenvalues=None, seed=0, dtype=torch.float64):
    """A linear decoder ``D(z) = W z + b``.

    With ``eigenvalues`` given, ``W`` is built so that the Hessian of the mean squared error,
    ``2 W^T W / n_features``, has exactly those eigenvalues.
    """
    rng = np.random.default_rng(seed)
    layer = torch.nn.Linear(n_components, n_features).to(dtype)
    if eigenvalues is not None:
        q_out, _ = np.linalg.qr(rng.standard_normal((n_features, n_components)))
        q_in, _ = np.linalg.qr(rng.standard_normal((n_components, n_components)))
        singular = np.sqrt(np.asarray(eigenvalues) * n_features / 2)
        weight = q_out @ np.diag(singular) @ q_in.T
    else:
        weight = rng.standard_normal((n_features, n_components))
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=dtype))
        layer.bias.copy_(torch.as_tensor(rng.standard_normal(n_features), dtype=dtype))
    return layer


def least_squares_codes(layer, target):
    """The minimiser of the mean squared error over ``z`` for a linear decoder."""
    w = layer.weight.detach().numpy()
    rhs = (target - layer.bias.detach()).numpy().T
    return np.linalg.lstsq(w, rhs, rcond=None)[0].T


def gradient_flow_solution(layer, target, t):
    """Exact ``z(t)`` of ``dz/dt = -grad mse`` from ``z = 0`` for a linear decoder."""
    w = layer.weight.detach().numpy()
    n_features = w.shape[0]
    hessian = 2 * w.T @ w / n_features
    z_star = least_squares_codes(layer, target)
    values, vectors = np.linalg.eigh(hessian)
    decay = vectors @ np.diag(np.exp(-values * t)) @ vectors.T
    return z_star - z_star @ decay.T


def mlp_decoder(n_components, n_features, hidden=16, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    layers = [
        torch.nn.Linear(n_components, hidden),
        torch.nn.ELU(),
        torch.nn.Linear(hidden, n_features),
    ]
    net = torch.nn.Sequential(*layers).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype) * 0.8)
    return net


def binary_targets(n_samples, n_features, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n_samples, n_features, generator=gen, dtype=dtype)
