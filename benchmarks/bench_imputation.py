"""Imputation benchmark: GradientFlowImputer vs mean, KNN, iterative and a zero-filled autoencoder.

Usage::

    python benchmarks/bench_imputation.py [--datasets digits mnist fashion-mnist]
        [--n-train 5000] [--n-test 1000] [--epochs N] [--out docs/imputation] [--threads 1]

Protocol (one run, one seed). Every imputer is fitted once per data set on the training
images with 30% of their pixels missing completely at random (MCAR), and imputes those
training images. Held-out test images then lose pixels in five patterns: MCAR 30%, 50%
and 80%, a random square of half the image's side per image, and the lower half of every
image. Reported per pattern: RMSE and binary cross-entropy (BCE, predictions clipped to
[1e-7, 1 - 1e-7]) on the hidden test pixels, and the accuracy of a logistic regression
trained on the imputed training images and tested on the imputed test images. Times: fit,
imputing the training images, imputing all five test sets.

Models: ``GradientFlowImputer`` with ``GradientFlowEncoder(loss='bce', solver='lbfgs',
learning_rate=1e-3, batch_size=128, fit_stop_tol=1e-2)`` and the epochs and components of
``GFE_SETTINGS`` (``--epochs`` overrides), other parameters default (decoder 150-300-600,
``stop_tol=1e-4``), float32; the same encoder
fitted on the complete training images (what training on incomplete data costs);
``AutoEncoderBaseline`` with the same decoder and code size (batch 32, learning rate
5e-4), trained for
``AE_EPOCHS_PER_GFE_EPOCH`` times the GFE's epochs on zero-filled images, whose
reconstruction of a zero-filled image fills its holes; ``SimpleImputer(mean)``;
``KNNImputer()`` (5 neighbours); ``IterativeImputer(n_nearest_features=50, max_iter=5,
min_value=0, max_value=1)``, since its default (all 783 other pixels per pixel, 10 rounds)
is out of reach on MNIST-sized data: ``--iterative-default-rows`` times one default round.

digits: scikit-learn's 1,797 8x8 digits scaled to [0, 1], 500 held out. MNIST and
Fashion-MNIST: ``--n-train`` images drawn from the training set, ``--n-test`` from the test
set (``GFE_SKLEARN_DATA`` names the data folder). Writes ``imputation.json`` and one
inpainting grid per data set (observed / GFE / KNN / truth) to ``--out``.
"""

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression

import gfe_sklearn
from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder, GradientFlowImputer
from gfe_sklearn._scoring import hidden_entry_error
from gfe_sklearn.datasets import load_fashion_mnist, load_mnist
from gfe_sklearn.plotting import subplots

PATTERNS = ("mcar30", "mcar50", "mcar80", "square", "lower-half")
TRAIN_PATTERN = "mcar30"
METHODS = ("GFE", "GFE (complete fit)", "AE zero-fill", "mean", "KNN", "iterative")
# An autoencoder epoch costs a small fraction of a GFE epoch; it gets more of them.
AE_EPOCHS_PER_GFE_EPOCH = 10
# About 15,000-20,000 training images seen per fit; digits' 64 pixels, 80% of them missing,
# leave a 20-number code underdetermined, so it gets 10.
GFE_SETTINGS = {
    "digits": {"n_components": 10, "epochs": 15},
    "mnist": {"n_components": 20, "epochs": 3},
    "fashion-mnist": {"n_components": 20, "epochs": 3},
}


def missing_mask(pattern, n_images, side, rng):
    """Which pixels of ``n_images`` square images of ``side`` pixels are missing."""
    shape = (n_images, side, side)
    if pattern.startswith("mcar"):
        return (rng.uniform(size=shape) < int(pattern[4:]) / 100).reshape(n_images, -1)
    mask = np.zeros(shape, dtype=bool)
    if pattern == "lower-half":
        mask[:, side // 2 :] = True
    elif pattern == "square":
        size = side // 2
        corners = rng.randint(0, side - size + 1, size=(n_images, 2))
        for image, (row, col) in zip(mask, corners):
            image[row : row + size, col : col + size] = True
    else:
        raise ValueError(f"unknown pattern {pattern!r}; choose one of {PATTERNS}")
    return mask.reshape(n_images, -1)


def load(name, n_train, n_test, rng):
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X = (X / 16).astype(np.float32)
        order = rng.permutation(len(X))
        test, train = order[:500], order[500:]
        return X[train], y[train], X[test], y[test]
    loader = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}[name]
    X_train, y_train = loader(subset="train", return_X_y=True)
    X_test, y_test = loader(subset="test", return_X_y=True)
    train = rng.choice(len(X_train), n_train, replace=False)
    test = rng.choice(len(X_test), n_test, replace=False)
    return X_train[train], y_train[train], X_test[test], y_test[test]


class ZeroFilledAutoencoder:
    """The naive alternative: an autoencoder sees holes as black pixels and fills them."""

    def __init__(self, **params):
        self.model = AutoEncoderBaseline(**params)

    def fit(self, X):
        self.model.fit(np.nan_to_num(X, nan=0.0))
        return self

    def transform(self, X):
        filled = np.nan_to_num(X, nan=0.0)
        guess = self.model.inverse_transform(self.model.transform(filled))
        return np.where(np.isnan(X), guess, X)


def make_imputers(n_components, epochs, seed):
    # batch_size, fit_stop_tol and fit_max_steps pinned at the values of the published run
    # (0.3.0's defaults; 0.4 caps the training flows at 25 steps).
    encoder = GradientFlowEncoder(
        n_components=n_components,
        loss="bce",
        solver="lbfgs",
        learning_rate=1e-3,
        batch_size=128,
        fit_stop_tol=1e-2,
        fit_max_steps=None,
        max_iter=epochs,
        device="cpu",
        random_state=seed,
    )
    return {
        "GFE": GradientFlowImputer(encoder=encoder, keep_empty_features=True),
        "GFE (complete fit)": GradientFlowImputer(encoder=encoder, keep_empty_features=True),
        "AE zero-fill": ZeroFilledAutoencoder(
            n_components=n_components,
            loss="bce",
            batch_size=32,
            learning_rate=5e-4,
            max_iter=AE_EPOCHS_PER_GFE_EPOCH * epochs,
            device="cpu",
            random_state=seed,
        ),
        "mean": SimpleImputer(strategy="mean", keep_empty_features=True),
        "KNN": KNNImputer(keep_empty_features=True),
        "iterative": IterativeImputer(
            n_nearest_features=50,
            max_iter=5,
            min_value=0,
            max_value=1,
            keep_empty_features=True,
            random_state=seed,
        ),
    }


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def run_dataset(name, args, rng):
    X_train, y_train, X_test, y_test = load(name, args.n_train, args.n_test, rng)
    side = int(round(np.sqrt(X_train.shape[1])))
    train_holes = np.where(missing_mask(TRAIN_PATTERN, len(X_train), side, rng), np.nan, X_train)
    tests = {p: missing_mask(p, len(X_test), side, rng) for p in PATTERNS}
    settings = dict(GFE_SETTINGS[name])
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    result = {
        "n_train": len(X_train),
        "n_test": len(X_test),
        "side": side,
        "methods": {},
        "gfe": settings,
    }
    filled_for_grid = {}
    for method, imputer in make_imputers(
        settings["n_components"], settings["epochs"], args.seed
    ).items():
        fit_on = X_train if method == "GFE (complete fit)" else train_holes
        _, fit_seconds = timed(imputer.fit, fit_on)
        train_filled, train_seconds = timed(imputer.transform, train_holes)
        classifier = LogisticRegression(max_iter=300).fit(train_filled, y_train)
        entry = {
            "fit_s": fit_seconds,
            "impute_train_s": train_seconds,
            "impute_test_s": 0.0,
            "patterns": {},
        }
        for pattern, mask in tests.items():
            holes = np.where(mask, np.nan, X_test)
            filled, seconds = timed(imputer.transform, holes)
            entry["impute_test_s"] += seconds
            entry["patterns"][pattern] = {
                "rmse": hidden_entry_error(X_test, filled, mask, "rmse"),
                "bce": hidden_entry_error(X_test, filled, mask, "bce"),
                "accuracy": float(classifier.score(filled, y_test)),
            }
            filled_for_grid.setdefault(pattern, {})[method] = filled
        result["methods"][method] = entry
        print(
            f"  {name} {method}: fit {fit_seconds:.1f} s, train {train_seconds:.1f} s, "
            f"tests {entry['impute_test_s']:.1f} s",
            flush=True,
        )
    complete = LogisticRegression(max_iter=300).fit(X_train, y_train)
    result["accuracy_complete"] = float(complete.score(X_test, y_test))
    if args.out is not None:
        inpainting_grid(name, X_test, tests, filled_for_grid, side, args.out)
    return result


def inpainting_grid(name, X_test, tests, filled, side, out):
    from matplotlib import colormaps

    shown = ("mcar50", "mcar80", "square", "lower-half")
    per_pattern = 3
    rows = ("observed", "GFE", "KNN", "truth")
    fig, axes = subplots(len(rows), len(shown) * per_pattern, panel_size=(0.85, 0.9))
    cmap = colormaps["gray"].with_extremes(bad="tab:red")
    for p, pattern in enumerate(shown):
        for k in range(per_pattern):
            column = p * per_pattern + k
            images = {
                "observed": np.ma.masked_array(X_test[k], tests[pattern][k]),
                "GFE": filled[pattern]["GFE"][k],
                "KNN": filled[pattern]["KNN"][k],
                "truth": X_test[k],
            }
            for r, row in enumerate(rows):
                ax = axes[r, column]
                ax.imshow(np.reshape(images[row], (side, side)), cmap=cmap, vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if column == 0:
                    ax.set_ylabel(row, fontsize=8)
                if r == 0 and k == 0:
                    ax.set_title(pattern, fontsize=8, loc="left")
    fig.suptitle(f"{name}: missing pixels in red", fontsize=9)
    path = Path(out) / f"inpainting-{name}.png"
    fig.savefig(path, dpi=120)
    print(f"  wrote {path}", flush=True)


def print_tables(name, result):
    methods = list(result["methods"])
    gfe = result["gfe"]
    print(
        f"\n### {name} ({result['n_train']} training images with 30% MCAR missing, "
        f"{result['n_test']} test images; GFE {gfe['n_components']} components, "
        f"{gfe['epochs']} epochs)\n"
    )
    for metric, label in (
        ("rmse", "hidden-pixel RMSE"),
        ("bce", "hidden-pixel BCE"),
        ("accuracy", "downstream accuracy"),
    ):
        print(
            f"{label} (lower is better)"
            if metric != "accuracy"
            else f"{label} (higher is better; complete images: {result['accuracy_complete']:.3f})"
        )
        print("| pattern | " + " | ".join(methods) + " |")
        print("|---|" + "---:|" * len(methods))
        for pattern in PATTERNS:
            values = [result["methods"][m]["patterns"][pattern][metric] for m in methods]
            best = min(values) if metric != "accuracy" else max(values)
            cells = [f"**{v:.4f}**" if v == best else f"{v:.4f}" for v in values]
            print(f"| {pattern} | " + " | ".join(cells) + " |")
        print()
    print("time in seconds (fit on the training images / impute them / impute the 5 test sets)")
    print("| | " + " | ".join(methods) + " |")
    print("|---|" + "---:|" * len(methods))
    for key, label in (
        ("fit_s", "fit"),
        ("impute_train_s", "impute training"),
        ("impute_test_s", "impute tests"),
    ):
        print(
            f"| {label} | " + " | ".join(f"{result['methods'][m][key]:.1f}" for m in methods) + " |"
        )
    print()


def iterative_default_round(name, rows, rng):
    """Seconds of one round of IterativeImputer's default on ``rows`` training images."""
    X_train, _, _, _ = load(name, max(rows, 1), 1, rng)
    X = X_train[:rows]
    side = int(round(np.sqrt(X.shape[1])))
    holes = np.where(missing_mask(TRAIN_PATTERN, len(X), side, rng), np.nan, X)
    _, seconds = timed(IterativeImputer(max_iter=1, random_state=0).fit, holes)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=["digits", "mnist", "fashion-mnist"])
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="GFE epochs for every data set (default: GFE_SETTINGS)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="docs/imputation")
    parser.add_argument(
        "--iterative-default-rows",
        type=int,
        default=0,
        help="time one default IterativeImputer round on this many MNIST training images (0: skip)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.out is not None:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
        f"thread(s); gfe-sklearn {gfe_sklearn.__version__}, scikit-learn "
        f"{sklearn.__version__}, torch {torch.__version__}; seed {args.seed}; AE epochs "
        f"{AE_EPOCHS_PER_GFE_EPOCH} x the GFE's",
        flush=True,
    )
    results = {"args": vars(args)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name in args.datasets:
            rng = np.random.RandomState(args.seed)
            results[name] = run_dataset(name, args, rng)
            print_tables(name, results[name])
        if args.iterative_default_rows:
            seconds = iterative_default_round(
                "mnist", args.iterative_default_rows, np.random.RandomState(args.seed)
            )
            results["iterative_default_round_s"] = seconds
            print(
                f"IterativeImputer() default, one round (of max_iter=10) on "
                f"{args.iterative_default_rows} MNIST training images: {seconds:.1f} s"
            )
    if args.out is not None:
        path = Path(args.out) / "imputation.json"
        path.write_text(json.dumps(results, indent=1))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
