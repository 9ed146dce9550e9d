"""Filling in missing pixels: GradientFlowImputer next to KNNImputer on digits
===========================================================================

A gradient flow encoder needs no encoder network: a sample's code is found by minimising
its reconstruction loss, and with ``allow_nan=True`` that loss covers the observed pixels
only. ``GradientFlowImputer`` fits such an encoder on incomplete images and reads each
missing pixel off the decoder's reconstruction (here averaged over the codes reached
from eight starts per image, ``n_starts``).

The script hides 30% of the pixels of scikit-learn's digits (scaled to [0, 1]) at random,
fits the imputers on the incomplete training images, then hides pixels of held-out images
in three ways (50% at random, 80% at random, the lower half) and prints the error on the
hidden pixels and the accuracy of ``imputer -> LogisticRegression`` pipelines. It also
picks ``n_components`` with ``GridSearchCV`` scored on entries hidden from the encoder
(``make_hidden_entry_scorer``) and draws observed / GFE / KNN / truth::

    python examples/plot_imputation.py --out imputation.png     # about 45 s on one core

docs/imputation.md has the full benchmark (MNIST, Fashion-MNIST, more baselines).
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import KNNImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline

from gfe_sklearn import GradientFlowEncoder, GradientFlowImputer, make_hidden_entry_scorer
from gfe_sklearn.plotting import subplots


def hide(X, pattern, rng):
    """A copy of the 8x8 images ``X`` with the pixels of ``pattern`` set to NaN."""
    X = X.copy()
    if pattern == "lower half":
        X[:, 32:] = np.nan
    else:
        X[rng.uniform(size=X.shape) < float(pattern.rstrip("%")) / 100] = np.nan
    return X


def rmse_on_hidden(truth, filled, holes):
    missing = np.isnan(holes)
    return float(np.sqrt(np.mean((filled[missing] - truth[missing]) ** 2)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help="use only the first N digits (default: all 1,797)",
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default=None, help="save the figure here (PNG)")
    args = parser.parse_args()

    rng = np.random.RandomState(0)
    X, y = load_digits(return_X_y=True)
    X, y = (X[: args.n_samples] / 16).astype(np.float32), y[: args.n_samples]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    train_holes = hide(X_train, "30%", rng)

    encoder = GradientFlowEncoder(
        n_components=10,
        loss="bce",
        solver="amd",
        tau=10.0,
        learning_rate=1e-3,
        max_iter=args.epochs,
        device="cpu",
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # epochs are capped on purpose
        search = GridSearchCV(
            encoder.set_params(allow_nan=True),
            {"n_components": [5, 10]},
            cv=2,
            scoring=make_hidden_entry_scorer(0.3),
        ).fit(train_holes)
        print(
            "n_components picked on hidden entries:",
            search.best_params_["n_components"],
            "(scores",
            np.round(search.cv_results_["mean_test_score"], 4),
            ")",
        )
        imputers = {
            # MAP codes under a prior fitted to the training codes, and the mean completion
            # over 8 starts: hedges where the holes are large.
            "GFE": GradientFlowImputer(
                encoder=encoder.set_params(**search.best_params_),
                code_prior=1.0,
                n_starts=8,
                random_state=0,
            ),
            "KNN": KNNImputer(),
        }
        fitted, seconds = {}, {}
        for name, imputer in imputers.items():
            start = time.perf_counter()
            fitted[name] = make_pipeline(imputer, LogisticRegression(max_iter=2000))
            fitted[name].fit(train_holes, y_train)
            seconds[name] = time.perf_counter() - start

    patterns = ("50%", "80%", "lower half")
    print(
        f"\n{'pattern':<12}"
        + "".join(f"{name + ' RMSE':>11}{name + ' acc.':>10}" for name in fitted)
    )
    filled_images = {}
    for pattern in patterns:
        holes = hide(X_test, pattern, rng)
        row = f"{pattern:<12}"
        for name, pipe in fitted.items():
            filled = pipe[0].transform(holes)
            filled_images[pattern, name] = (holes, filled)
            row += f"{rmse_on_hidden(X_test, filled, holes):>11.4f}"
            row += f"{pipe.score(holes, y_test):>10.3f}"
        print(row)
    print(
        "\nfit seconds (imputer + classifier): "
        + ", ".join(f"{name} {s:.1f}" for name, s in seconds.items())
    )

    if args.out:
        from matplotlib import colormaps

        n_images = 4
        # Missing pixels in red: a masked pixel would otherwise show the white background.
        cmap = colormaps["gray"].with_extremes(bad="tab:red")
        fig, axes = subplots(4, n_images * len(patterns), panel_size=(0.8, 0.85))
        for p, pattern in enumerate(patterns):
            holes, gfe = filled_images[pattern, "GFE"]
            knn = filled_images[pattern, "KNN"][1]
            for k in range(n_images):
                column = p * n_images + k
                for r, image in enumerate((holes[k], gfe[k], knn[k], X_test[k])):
                    ax = axes[r, column]
                    ax.imshow(np.ma.masked_invalid(image).reshape(8, 8), cmap=cmap, vmin=0, vmax=1)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if column == 0:
                        ax.set_ylabel(("observed", "GFE", "KNN", "truth")[r], fontsize=8)
                axes[0, p * n_images].set_title(pattern, fontsize=8, loc="left")
        fig.savefig(args.out, dpi=120)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
