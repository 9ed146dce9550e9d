"""Loss curves and grouped bars from result dictionaries."""

import numpy as np

from ._base import colors, get_axes


def _as_curve(label, curve):
    if isinstance(curve, dict):
        x, y, yerr = curve.get("x"), curve.get("y"), curve.get("yerr")
    else:
        x, y, *rest = curve
        yerr = rest[0] if rest else None
    if x is None or y is None:
        raise ValueError(f"Curve {label!r} needs x and y values; got {curve!r}.")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"Curve {label!r} needs 1-d x and y of equal length; got shapes {x.shape} and "
            f"{y.shape}."
        )
    if yerr is not None:
        yerr = np.asarray(yerr, dtype=float)
        if yerr.shape != y.shape:
            raise ValueError(f"Curve {label!r}: yerr has shape {yerr.shape}, y has {y.shape}.")
    return x, y, yerr


def plot_curves(
    curves,
    *,
    reference=None,
    ax=None,
    xlabel=None,
    ylabel="mean cross-entropy",
    logx=False,
    logy=False,
    title=None,
    marker="o",
):
    """Plot named curves, with an optional error band and reference points of the same colour.

    Parameters
    ----------
    curves : dict
        Label -> ``(x, y)``, ``(x, y, yerr)`` or ``{"x": ..., "y": ..., "yerr": ...}``.
        ``yerr`` (e.g. a standard deviation over seeds) is drawn as a band ``y ± yerr``;
        NaN entries draw no band.
    reference : dict, optional
        Label -> ``(x, y)`` drawn as dashed lines with open markers, in the colour of the
        curve of the same label (e.g. the numbers reported in a paper). Labels without a
        curve get their own colour.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; by default a new pyplot-free figure (see ``ax.figure``).
    xlabel, ylabel, title : str, optional
    logx, logy : bool, default=False
        Logarithmic axes.
    marker : str, default="o"

    Returns
    -------
    ax : matplotlib.axes.Axes
    """
    ax = get_axes(ax)
    reference = reference or {}
    labels = list(curves) + [label for label in reference if label not in curves]
    palette = dict(zip(labels, colors(len(labels)), strict=True))
    for label, curve in curves.items():
        x, y, yerr = _as_curve(label, curve)
        ax.plot(x, y, marker=marker, markersize=3, color=palette[label], label=label)
        if yerr is not None and np.isfinite(yerr).any():
            band = np.where(np.isfinite(yerr), yerr, 0.0)
            ax.fill_between(x, y - band, y + band, color=palette[label], alpha=0.2, lw=0)
    for label, curve in reference.items():
        x, y, _ = _as_curve(label, curve)
        ax.plot(
            x,
            y,
            ls="--",
            marker="s",
            markerfacecolor="none",
            color=palette[label],
            label=f"{label} (paper)",
        )
    if logx:
        ax.set_xscale("log")
        _plain_log_ticks(ax, curves, reference)
    else:
        _compact_ticks(ax)
    if logy:
        ax.set_yscale("log")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if labels:
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax


def _plain_log_ticks(ax, curves, reference):
    """Label a log x axis with plain numbers: at the x values when all curves share a few."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    def xs_of(mapping):
        return [{float(x) for x in _as_curve(label, c)[0] if x > 0} for label, c in mapping.items()]

    sets, references = xs_of(curves), xs_of(reference)
    xs = set().union(*sets)
    shared = all(s == xs for s in sets) and all(r <= xs for r in references)
    if 0 < len(xs) <= 8 and shared:  # a few x values shared by all curves, e.g. budgets
        ticks = sorted(xs)
        ax.set_xticks(ticks, [_plain(x) for x in ticks])
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _plain(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _compact_ticks(ax):
    """Short labels on a linear x axis: six-digit image counts side by side overlap."""
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _compact(x)))


def _compact(x):
    if abs(x) >= 1e6:
        return f"{x / 1e6:.3g}M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:.3g}k"
    return _plain(x) if x > 0 else f"{x:.2g}"


def _plain(x):
    if x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}" if x >= 1 else f"{x:.2g}"


def plot_bars(
    values, *, errors=None, reference=None, ax=None, ylabel="mean cross-entropy", title=None
):
    """Grouped bars: one group per key of the inner dicts, one bar per series.

    Parameters
    ----------
    values : dict
        Series label -> {group label -> value}, e.g. ``{"AE": {"MNIST": 0.084}}``.
        A missing group leaves a gap.
    errors : dict, optional
        The same layout, drawn as error bars (e.g. a standard deviation over seeds).
    reference : dict, optional
        The same layout, drawn as black markers on the bars (e.g. a paper's numbers).
    ax : matplotlib.axes.Axes, optional
    ylabel, title : str, optional

    Returns
    -------
    ax : matplotlib.axes.Axes
    """
    ax = get_axes(ax)
    series = list(values)
    groups = []
    for by_group in values.values():
        groups.extend(g for g in by_group if g not in groups)
    width = 0.8 / max(len(series), 1)
    positions = np.arange(len(groups), dtype=float)
    has_reference = False
    for i, (label, color) in enumerate(zip(series, colors(len(series)), strict=True)):
        offset = positions - 0.4 + (i + 0.5) * width
        heights = [values[label].get(g, np.nan) for g in groups]
        errs = None
        if errors and label in errors:
            errs = [errors[label].get(g, np.nan) for g in groups]
            errs = np.where(np.isfinite(errs), errs, 0.0)
        ax.bar(offset, heights, width, yerr=errs, color=color, label=label, capsize=3)
        ref = (
            [reference[label].get(g, np.nan) for g in groups]
            if reference and label in reference
            else []
        )
        if np.isfinite(np.asarray(ref, dtype=float)).any():
            ax.plot(
                offset,
                ref,
                ls="none",
                marker="_",
                markersize=14,
                mew=2,
                color="black",
                label="paper" if not has_reference else None,
            )
            has_reference = True
    ax.set_xticks(positions, groups)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if series:
        ax.legend(fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    return ax
