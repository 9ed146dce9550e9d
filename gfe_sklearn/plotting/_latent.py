"""2-d maps of latent codes (t-SNE by default), coloured by label."""

import numpy as np

from ._base import colors, get_axes

EMBEDDINGS = ("tsne", "pca", "none")


def embed(codes, *, method="tsne", random_state=None, perplexity=30.0):
    """Map codes to 2-d points: t-SNE, PCA, or the codes themselves (``"none"``, 2 columns).

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_components)
    method : {"tsne", "pca", "none"}, default="tsne"
    random_state : int, RandomState instance or None, default=None
    perplexity : float, default=30.0
        t-SNE's perplexity; lowered to ``(n_samples - 1) / 3`` for small samples.

    Returns
    -------
    points : ndarray of shape (n_samples, 2)
    """
    codes = np.asarray(codes, dtype=float)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-d (n_samples, n_components); got {codes.shape}.")
    if method == "none":
        if codes.shape[1] != 2:
            raise ValueError(
                f"method='none' needs 2-d codes; these have {codes.shape[1]} "
                "columns. Use method='tsne' or 'pca'."
            )
        return codes
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=random_state).fit_transform(codes)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(perplexity, max(1.0, (codes.shape[0] - 1) / 3))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=random_state)
        return tsne.fit_transform(codes)
    raise ValueError(f"method={method!r} is not valid; choose one of {list(EMBEDDINGS)}.")


def plot_embedding(points, labels=None, *, target_names=None, ax=None, title=None, size=4.0):
    """Scatter 2-d points, one colour per label, with a legend.

    Parameters
    ----------
    points : array-like of shape (n_samples, 2)
    labels : array-like of shape (n_samples,), optional
        Integer or string labels; without them every point has one colour.
    target_names : sequence of str, optional
        Legend names indexed by integer label (``target_names[label]``).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; by default a new pyplot-free figure (see ``ax.figure``).
    title : str, optional
    size : float, default=4.0
        Marker area.

    Returns
    -------
    ax : matplotlib.axes.Axes
    """
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (n_samples, 2); got {points.shape}.")
    ax = get_axes(ax, figsize=(4.5, 4.0))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=size, linewidths=0)
    else:
        labels = np.asarray(labels)
        if labels.shape != (points.shape[0],):
            raise ValueError(f"labels must have shape ({points.shape[0]},); got {labels.shape}.")
        classes = np.unique(labels)
        for label, color in zip(classes, colors(len(classes)), strict=True):
            mask = labels == label
            name = label
            if target_names is not None and np.issubdtype(type(label), np.integer):
                name = target_names[int(label)]
            ax.scatter(
                points[mask, 0], points[mask, 1], s=size, color=color, linewidths=0, label=str(name)
            )
        ax.legend(markerscale=3, fontsize="x-small", loc="best", frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def plot_latent(
    model, X, y=None, *, method="tsne", random_state=None, target_names=None, ax=None, title=None
):
    """Encode ``X`` with a fitted model and draw a 2-d map of the codes, coloured by ``y``.

    Parameters
    ----------
    model : fitted encoder
        Anything with ``transform``, e.g. ``GradientFlowEncoder`` or ``AutoEncoderBaseline``.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,), optional
        Labels that colour the points.
    method : {"tsne", "pca", "none"}, default="tsne"
        How codes are mapped to the plane (see :func:`embed`).
    random_state : int, RandomState instance or None, default=None
    target_names : sequence of str, optional
    ax : matplotlib.axes.Axes, optional
    title : str, optional

    Returns
    -------
    ax : matplotlib.axes.Axes
    """
    points = embed(model.transform(X), method=method, random_state=random_state)
    return plot_embedding(points, y, target_names=target_names, ax=ax, title=title)
