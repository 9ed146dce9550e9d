"""Encoding by gradient flow, seen in a two-dimensional latent space
=================================================================

A ``GradientFlowEncoder`` with two latent dimensions is fitted on scikit-learn's digits. For
one held-out image ``y`` the left panel shows its loss ``l(y, D(z))`` over the latent plane
and the path of the gradient flow ``dz/dt = -grad_z l(y, D(z))`` from ``z = 0`` to the code
``z*`` that ``transform`` returns; the right panel shows the decoded image ``D(z(t))`` along
the path, next to ``y``, ending at ``D(z*)``. This is the README's picture::

    python examples/plot_gradient_flow.py --out docs/_static/gradient_flow.png

The path is traced with the engine (``gfe_sklearn.flow.encode``): the papers' AMD solver
run from ``z = 0`` to a series of horizons ``tau``.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from gfe_sklearn import GradientFlowEncoder
from gfe_sklearn.flow import LOSSES, encode
from gfe_sklearn.plotting import subplots


def flow_path(gfe, y, times):
    """``z(t)`` of the gradient flow of image ``y`` at each of ``times``, from ``z = 0``."""
    target = torch.tensor(y[None], dtype=torch.float32)
    path = [np.zeros(2)]
    with torch.no_grad():
        for t in times:
            # A tight stop rule: a horizon past the endpoint returns the endpoint.
            result = encode(gfe.decoder_, target, 2, solver="amd", tau=float(t), stop_tol=1e-6)
            path.append(result.z[0].numpy())
    return np.array(path)


def loss_landscape(gfe, y, extent, n=120):
    """``l(y, D(z))`` on an ``n`` x ``n`` grid of codes over ``[-extent, extent]^2``."""
    axis = np.linspace(-extent, extent, n)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    codes = torch.tensor(grid, dtype=torch.float32)
    with torch.no_grad():
        target = torch.tensor(y, dtype=torch.float32).expand(len(codes), -1)
        losses = LOSSES["bce"](gfe.decoder_(codes), target)
    return axis, losses.numpy().reshape(n, n)


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gradient_flow.png"))
    parser.add_argument("--max-iter", type=int, default=30, help="training epochs")
    args = parser.parse_args()

    X, y_labels = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    gfe = GradientFlowEncoder(
        n_components=2,
        hidden_layer_sizes=(32, 64),
        solver="lbfgs",
        max_iter=args.max_iter,
        random_state=0,
        device="cpu",
    )
    gfe.fit(X[:-100])
    # Of the held-out images, the one whose code lies furthest from z = 0 has the longest path.
    codes = gfe.transform(X[-100:])
    far = np.argmax(np.linalg.norm(codes, axis=1))
    y, z_star = X[-100 + far], codes[far]
    times = np.geomspace(1e-2, 1e7, 28)
    path = flow_path(gfe, y, times)
    extent = 1.3 * max(np.abs(path).max(), np.abs(z_star).max(), 1.0)
    axis, losses = loss_landscape(gfe, y, extent)

    figure, axes = subplots(1, 2, panel_size=(4.6, 4.0))
    ax = axes[0, 0]
    contours = ax.contourf(axis, axis, losses, levels=30, cmap="viridis")
    figure.colorbar(contours, ax=ax, label="l(y, D(z)), cross-entropy")
    ax.plot(path[:, 0], path[:, 1], "w.-", lw=1.5, ms=4, label="gradient flow z(t)")
    ax.plot(0, 0, "wo", ms=7, label="z(0) = 0")
    ax.plot(*z_star, "r*", ms=14, label="z* = transform(y)")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title("the loss of one image over the latent plane")
    ax.legend(fontsize="small", loc="lower left")

    # z = 0, three points evenly spaced along the path's length, and z*.
    length = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    picked = [int(np.argmin(np.abs(length - f * length[-1]))) for f in (0, 0.25, 0.5, 0.75)]
    labels = ["y", "D(0)"] + [f"t = {times[i - 1]:.0e}" for i in picked[1:]] + ["D(z*)"]
    shown = np.vstack([path[picked], z_star])
    images = gfe.inverse_transform(np.array(shown, dtype=np.float32))
    strip = np.ones((8, 9 * (len(images) + 1) + 1))
    for i, image in enumerate([y, *images]):
        strip[:, 1 + 9 * i : 9 + 9 * i] = image.reshape(8, 8)
    ax = axes[0, 1]
    ax.imshow(strip, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([4.5 + 9 * i for i in range(len(images) + 1)], labels, rotation=45)
    ax.set_yticks([])
    ax.set_title("y and D(z(t)) along the flow")
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
