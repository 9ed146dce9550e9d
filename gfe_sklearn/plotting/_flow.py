"""Convergence curves of the encoding flow: loss against flow time."""

import numpy as np

from ._base import get_axes


def _histories(result):
    t, loss = getattr(result, "t_history", None), getattr(result, "loss_history", None)
    if t is None or loss is None:
        if isinstance(result, tuple) and len(result) == 2:
            t, loss = result
        else:
            raise ValueError(
                "Pass a FlowResult recorded with record_history=True (from "
                "GradientFlowEncoder.flow_diagnostics or gfe_sklearn.flow.encode) or a "
                "(t_history, loss_history) pair; this result holds no history."
            )
    t = np.asarray(t.detach().cpu() if hasattr(t, "detach") else t, dtype=float)
    loss = np.asarray(loss.detach().cpu() if hasattr(loss, "detach") else loss, dtype=float)
    if t.shape != loss.shape or t.ndim != 2:
        raise ValueError(
            f"t_history and loss_history must be 2-d (steps, batch) of equal "
            f"shape; got {t.shape} and {loss.shape}."
        )
    return t, loss


def flow_loss_curve(result, t=None, n_points=200):
    """Mean over a batch of the loss reached by flow time ``t``, from recorded histories.

    Each sample's loss is held at its last accepted step (samples take steps at different
    times and stop at different times), then averaged over the batch at every ``t``.

    Parameters
    ----------
    result : FlowResult or tuple
        ``GradientFlowEncoder.flow_diagnostics(X, record_history=True)``'s or
        ``gfe_sklearn.flow.encode(..., record_history=True)``'s result, or its
        ``(t_history, loss_history)`` arrays of shape ``(steps, batch)``, NaN-padded.
    t : array-like, optional
        Times to report; by default ``0`` and ``n_points - 1`` geometrically spaced times up to
        the latest time reached.
    n_points : int, default=200

    Returns
    -------
    t : ndarray of shape (n_times,)
    loss : ndarray of shape (n_times,)
    """
    times, losses = _histories(result)
    if t is None:
        end = np.nanmax(times)
        t = (
            np.concatenate([[0.0], np.geomspace(end * 1e-4, end, n_points - 1)])
            if end > 0
            else np.zeros(1)
        )
    t = np.asarray(t, dtype=float)
    curves = []
    for column in range(times.shape[1]):
        valid = np.isfinite(times[:, column]) & np.isfinite(losses[:, column])
        ts, ls = times[valid, column], losses[valid, column]
        if not ts.size:
            continue
        index = np.searchsorted(ts, t, side="right") - 1
        curves.append(ls[np.clip(index, 0, None)])
    if not curves:
        raise ValueError("The histories hold no finite step.")
    return t, np.mean(curves, axis=0)


def plot_flow_history(
    result, *, ax=None, label=None, color=None, per_sample=False, logx=True, title=None
):
    """Plot the loss of an encoding against flow time: the batch mean, optionally each sample.

    Parameters
    ----------
    result : FlowResult or tuple
        From ``GradientFlowEncoder.flow_diagnostics(X, record_history=True)`` or
        ``gfe_sklearn.flow.encode(..., record_history=True)``, or its
        ``(t_history, loss_history)`` arrays.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; by default a new pyplot-free figure (see ``ax.figure``).
    label : str, optional
        Legend label of the mean curve.
    color : optional
        Colour of the curves.
    per_sample : bool, default=False
        Also draw each sample's own curve, thin.
    logx : bool, default=True
        Logarithmic time axis (``t = 0`` is then left out).
    title : str, optional

    Returns
    -------
    ax : matplotlib.axes.Axes
    """
    ax = get_axes(ax)
    t, mean = flow_loss_curve(result)
    keep = t > 0 if logx else np.ones_like(t, dtype=bool)
    (line,) = ax.plot(t[keep], mean[keep], color=color, label=label)
    if per_sample:
        times, losses = _histories(result)
        for column in range(times.shape[1]):
            ok = np.isfinite(times[:, column]) & (times[:, column] > 0 if logx else True)
            ax.plot(
                times[ok, column], losses[ok, column], color=line.get_color(), lw=0.5, alpha=0.3
            )
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("flow time t")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    if label:
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax
