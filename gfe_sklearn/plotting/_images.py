"""Reconstruction grids: originals on top, one row per model."""

import numpy as np

from ._base import get_axes


def _image_shape(n_features, image_shape):
    if image_shape is not None:
        if int(np.prod(image_shape)) != n_features:
            raise ValueError(
                f"image_shape={tuple(image_shape)} holds {int(np.prod(image_shape))} pixels, "
                f"but the images have {n_features} features."
            )
        return tuple(image_shape)
    side = int(round(np.sqrt(n_features)))
    if side * side != n_features:
        raise ValueError(
            f"Images with {n_features} features are not square; pass image_shape=(rows, cols)."
        )
    return side, side


def reconstruct(model, X):
    """``model.inverse_transform(model.transform(X))``: the reconstructions of ``X``."""
    return model.inverse_transform(model.transform(X))


def plot_reconstructions(models, X, *, image_shape=None, ax=None, title=None, cmap="gray", pad=2):
    """Tile images and their reconstructions: row 0 holds ``X``, then one row per model.

    Parameters
    ----------
    models : dict
        Row label -> a fitted encoder (anything with ``transform`` and ``inverse_transform``,
        e.g. ``GradientFlowEncoder``) or an array of reconstructions shaped like ``X``.
    X : array-like of shape (n_images, n_features)
        Images with values in [0, 1], flattened row by row.
    image_shape : tuple of int, optional
        ``(rows, cols)`` of one image; by default the square root of ``n_features``.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; by default a new pyplot-free figure (see ``ax.figure``).
    title : str, optional
    cmap : str, default="gray"
    pad : int, default=2
        Pixels of white space between images.

    Returns
    -------
    ax : matplotlib.axes.Axes
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or not len(X):
        raise ValueError(f"X must be a non-empty 2-d array of flattened images; got {X.shape}.")
    rows_of, cols_of = _image_shape(X.shape[1], image_shape)
    rows = [("original", X)]
    for label, model in models.items():
        images = model if isinstance(model, np.ndarray) else reconstruct(model, X)
        images = np.asarray(images, dtype=float)
        if images.shape != X.shape:
            raise ValueError(f"Reconstructions {label!r} have shape {images.shape}, X {X.shape}.")
        rows.append((label, images))

    n = X.shape[0]
    height, width = rows_of + pad, cols_of + pad
    mosaic = np.ones((len(rows) * height + pad, n * width + pad))
    for r, (_, images) in enumerate(rows):
        for c in range(n):
            top, left = pad + r * height, pad + c * width
            mosaic[top : top + rows_of, left : left + cols_of] = images[c].reshape(rows_of, cols_of)

    ax = get_axes(ax, figsize=(max(3.0, 0.6 * n + 1.0), 0.6 * len(rows) + 0.6))
    ax.imshow(np.clip(mosaic, 0.0, 1.0), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks(
        [pad + r * height + rows_of / 2 for r in range(len(rows))], [label for label, _ in rows]
    )
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(left=False)
    if title:
        ax.set_title(title)
    return ax
