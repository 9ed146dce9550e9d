import io
import subprocess
import sys

import numpy as np
import pytest
import torch

from gfe_sklearn.flow import encode
from gfe_sklearn.plotting import (
    embed,
    flow_loss_curve,
    plot_bars,
    plot_curves,
    plot_embedding,
    plot_flow_history,
    plot_latent,
    plot_reconstructions,
    subplots,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_bytes(ax):
    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png")
    return buffer.getvalue()


class Halving:
    """A stand-in encoder: codes are the first two features, reconstructions X / 2."""

    def transform(self, X):
        self.X = np.asarray(X)
        return self.X[:, :2]

    def inverse_transform(self, Z):
        return self.X / 2


def test_importing_and_plotting_touch_neither_pyplot_nor_the_backend():
    code = (
        "import sys, gfe_sklearn.plotting as p\n"
        "assert 'matplotlib' not in sys.modules, 'imported at import time'\n"
        "import matplotlib\n"
        "backend = matplotlib.rcParams._get_backend_or_none()\n"
        "ax = p.plot_curves({'a': ([1, 2], [3, 4])})\n"
        "ax.figure.savefig(__import__('io').BytesIO(), format='png')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "assert matplotlib.rcParams._get_backend_or_none() == backend, 'backend changed'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_missing_matplotlib_raises_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install gfe-sklearn\[plot\]"):
        plot_curves({"a": ([1, 2], [3, 4])})


def test_plot_curves_draws_bands_and_references_in_the_curve_colour():
    ax = plot_curves(
        {
            "AE": {"x": [1, 2, 3], "y": [3, 2, 1], "yerr": [0.1, np.nan, 0.1]},
            "GFE": ([1, 2, 3], [2, 1, 0.5]),
        },
        reference={"AE": ([1, 3], [2.9, 1.1])},
        logx=True,
        xlabel="images",
    )
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"AE", "GFE", "AE (paper)"}
    assert lines["AE"].get_color() == lines["AE (paper)"].get_color()
    assert lines["AE"].get_color() != lines["GFE"].get_color()
    assert len(ax.collections) == 1  # one error band
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "images"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    assert png_bytes(ax)[:8] == PNG_MAGIC


def test_plot_curves_labels_large_linear_x_compactly():
    ax = plot_curves(
        {
            "AE": ([55_000, 330_000, 660_000], [0.29, 0.28, 0.277]),
            "GFE": ([0.5, 2_500_000], [0.3, 0.2]),
        }
    )
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "1M" in labels and "2M" in labels
    ax = plot_curves({"AE": ([55_000, 330_000, 660_000], [0.29, 0.28, 0.277])})
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "200k" in labels and max(map(len, labels)) <= 5


def test_plot_curves_draws_on_a_given_axes():
    figure, axes = subplots(1, 2)
    assert axes.shape == (1, 2)
    assert plot_curves({"a": ([1, 2], [1, 2])}, ax=axes[0, 1]) is axes[0, 1]
    assert len(axes[0, 1].get_lines()) == 1 and not axes[0, 0].get_lines()


@pytest.mark.parametrize(
    "curve, match",
    [
        (([1, 2], [1]), "equal length"),
        ({"x": [1, 2]}, "needs x and y"),
        ({"x": [1, 2], "y": [1, 2], "yerr": [1]}, "yerr"),
    ],
)
def test_plot_curves_rejects_malformed_curves(curve, match):
    with pytest.raises(ValueError, match=match):
        plot_curves({"bad": curve})


def test_plot_bars_groups_series_with_errors_and_reference():
    values = {"AE": {"MNIST": 0.08, "FMNIST": 0.27}, "GFE": {"MNIST": 0.083}}
    ax = plot_bars(
        values,
        errors={"AE": {"MNIST": 0.01}},
        reference={"AE": {"MNIST": 0.0843}, "GFE": {"MNIST": 0.0830}},
    )
    heights = [p.get_height() for p in ax.patches]
    assert heights[:2] == [0.08, 0.27] and heights[2] == 0.083 and np.isnan(heights[3])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["MNIST", "FMNIST"]
    assert [line.get_label() for line in ax.get_lines()].count("paper") == 1


def test_plot_reconstructions_tiles_originals_above_each_model():
    X = np.random.default_rng(0).uniform(size=(3, 16))
    ax = plot_reconstructions({"half": Halving(), "zeros": np.zeros_like(X)}, X, pad=1)
    mosaic = ax.images[0].get_array()
    assert mosaic.shape == (3 * 5 + 1, 3 * 5 + 1)
    np.testing.assert_allclose(mosaic[1:5, 1:5], X[0].reshape(4, 4))
    np.testing.assert_allclose(mosaic[6:10, 6:10], X[1].reshape(4, 4) / 2)
    np.testing.assert_allclose(mosaic[11:15, 11:15], 0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["original", "half", "zeros"]


def test_plot_reconstructions_checks_shapes():
    X = np.zeros((2, 15))
    with pytest.raises(ValueError, match="not square"):
        plot_reconstructions({}, X)
    with pytest.raises(ValueError, match="holds 16 pixels"):
        plot_reconstructions({}, X, image_shape=(4, 4))
    with pytest.raises(ValueError, match="shape"):
        plot_reconstructions({"bad": np.zeros((2, 3))}, X, image_shape=(3, 5))


def test_plot_latent_colours_each_label_and_names_them():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 5)), np.repeat([0, 1, 2], 10)
    ax = plot_latent(Halving(), X, y, method="none", target_names=["zero", "one", "two"])
    assert len(ax.collections) == 3
    np.testing.assert_allclose(ax.collections[0].get_offsets(), X[:10, :2])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zero", "one", "two"]


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_embed_maps_codes_to_the_plane(method):
    codes = np.random.default_rng(0).normal(size=(20, 6))
    points = embed(codes, method=method, random_state=0)
    assert points.shape == (20, 2) and np.isfinite(points).all()


def test_embed_and_plot_embedding_check_their_input():
    with pytest.raises(ValueError, match="method='none' needs 2-d codes"):
        embed(np.zeros((4, 3)), method="none")
    with pytest.raises(ValueError, match="not valid"):
        embed(np.zeros((4, 3)), method="umap")
    with pytest.raises(ValueError, match=r"\(n_samples, 2\)"):
        plot_embedding(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="labels"):
        plot_embedding(np.zeros((4, 2)), [0, 1])


def test_flow_loss_curve_holds_each_sample_at_its_last_step():
    nan = np.nan
    t = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, nan]])
    loss = np.array([[1.0, 2.0], [0.5, 1.0], [0.25, nan]])
    times, mean = flow_loss_curve((t, loss), t=[0.0, 0.5, 1.0, 2.5, 3.0, 10.0])
    np.testing.assert_allclose(
        mean,
        [(1 + 2) / 2, (1 + 2) / 2, (0.5 + 2) / 2, (0.5 + 1) / 2, (0.25 + 1) / 2, (0.25 + 1) / 2],
    )
    np.testing.assert_allclose(times, [0.0, 0.5, 1.0, 2.5, 3.0, 10.0])


def test_flow_history_of_a_real_encoding():
    generator = torch.Generator().manual_seed(0)
    decoder = torch.nn.Linear(2, 6)
    with torch.no_grad():
        decoder.weight.copy_(torch.randn(6, 2, generator=generator))
    target = torch.rand(4, 6, generator=generator)
    result = encode(decoder, target, 2, record_history=True)
    t, mean = flow_loss_curve(result)
    assert t[0] == 0 and np.isclose(t[-1], float(result.t.max()))
    assert mean[-1] == pytest.approx(float(result.loss.mean()), rel=1e-5)
    assert np.all(np.diff(mean) <= 1e-7)  # AMD only accepts steps that lower the loss
    ax = plot_flow_history(result, per_sample=True, label="AMD")
    assert len(ax.get_lines()) == 1 + 4


def test_flow_history_needs_a_recorded_history():
    result = encode(torch.nn.Linear(2, 3), torch.rand(2, 3), 2)
    with pytest.raises(ValueError, match="record_history=True"):
        flow_loss_curve(result)
