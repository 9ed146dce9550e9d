"""matplotlib on demand: the import with its install hint, and axes without pyplot."""

INSTALL_HINT = (
    "gfe_sklearn.plotting needs matplotlib, which is not installed. Install it with "
    "`pip install gfe-sklearn[plot]` (or `pip install matplotlib`)."
)


def require_matplotlib():
    """Import and return matplotlib, or raise an ``ImportError`` that says how to install it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return matplotlib


def get_axes(ax=None, figsize=(5.0, 3.6)):
    """``ax``, or the axes of a new figure that needs no pyplot and no global backend.

    The new figure is a plain :class:`matplotlib.figure.Figure` on an Agg canvas: nothing is
    registered with pyplot and the backend setting is left alone; ``ax.figure.savefig(...)``
    writes it.
    """
    require_matplotlib()
    if ax is not None:
        return ax
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure.add_subplot()


def subplots(n_rows=1, n_cols=1, *, panel_size=(4.5, 3.4), **subplot_kw):
    """A pyplot-free figure and its ``n_rows`` x ``n_cols`` grid of axes (always a 2-d array).

    Like ``matplotlib.pyplot.subplots`` but without pyplot: nothing global is touched, and
    ``figure.savefig(...)`` writes the figure. ``panel_size`` is the size of one panel in
    inches; ``subplot_kw`` goes to ``Figure.subplots``.

    Returns
    -------
    figure : matplotlib.figure.Figure
    axes : ndarray of shape (n_rows, n_cols) of matplotlib.axes.Axes
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(panel_size[0] * n_cols, panel_size[1] * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(n_rows, n_cols, squeeze=False, **subplot_kw)


def colors(n):
    """``n`` distinct colours of the default cycle (tab10), repeating after ten."""
    require_matplotlib()
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]
