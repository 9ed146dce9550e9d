"""Figures of fitted encoders and of experiment results.

matplotlib is imported only when a function is called (install it with
``pip install gfe-sklearn[plot]``). Every plotting function takes an optional ``ax``; without
one it draws on a new figure that is not registered with pyplot (no global state) and
returns the axes, so ``ax.figure.savefig("figure.png")`` saves it.
"""

from ._base import subplots
from ._curves import plot_bars, plot_curves
from ._flow import flow_loss_curve, plot_flow_history
from ._images import plot_reconstructions, reconstruct
from ._latent import embed, plot_embedding, plot_latent

__all__ = [
    "embed",
    "flow_loss_curve",
    "plot_bars",
    "plot_curves",
    "plot_embedding",
    "plot_flow_history",
    "plot_latent",
    "plot_reconstructions",
    "reconstruct",
    "subplots",
]
