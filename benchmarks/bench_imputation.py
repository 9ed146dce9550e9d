"""Imputation benchmark: GradientFlowImputer vs mean, KNN, iterative and a zero-filled autoencoder.

Usage::

    python benchmarks/bench_imputation.py [--datasets digits mnist fashion-mnist]
        [--n-train 5000] [--n-test 1000] [--epochs N] [--n-components K]
        [--fit-max-steps {N,none}] [--fit-hide-fraction F] [--code-prior C] [--n-starts S]
        [--n-estimators E] [--n-jobs J] [--methods GFE KNN ...]
        [--out docs/imputation] [--threads 1]

Protocol (one run, one seed). Every imputer is fitted once per data set on the training
images with 30% of their pixels missing completely at random (MCAR), and imputes those
training images. Held-out test images then lose pixels in five patterns: MCAR 30%, 50%
and 80%, a random square of half the image's side per image, and the lower half of every
image. Reported per pattern: RMSE and binary cross-entropy (BCE, predictions clipped to
[1e-7, 1 - 1e-7]) on the hidden test pixels, and the accuracy of a logistic regression
trained on the imputed training images and tested on the imputed test images. Times: fit,
imputing the training images, imputing all five test sets.

Models: ``GradientFlowImputer`` with ``GradientFlowEncoder(loss='bce', solver='lbfgs',
learning_rate=1e-3, batch_size=128, fit_stop_tol=1e-2, fit_max_steps=None, code_prior=0)``
and the epochs and components of ``GFE_SETTINGS`` (``--epochs``, ``--n-components`` and
``--fit-max-steps`` override them for every data set), other parameters default (decoder
150-300-600, ``stop_tol=1e-4``), float32, ``fit_hide_fraction`` (``--fit-hide-fraction``,
default 0),
and the imputer's ``code_prior`` (``--code-prior``, default 0:
no prior on the codes), ``n_starts`` (``--n-starts``, default 1) and ``n_estimators``
(``--n-estimators``, default 1: one imputer, no ensemble; ``--n-jobs`` fits and runs the
members in that many processes, with the same result); the same imputer
fitted on the complete training images (what training on incomplete data costs);
``AutoEncoderBaseline`` with the same decoder and code size (batch 32, learning rate
5e-4), trained for
``AE_EPOCHS_PER_GFE_EPOCH`` times the GFE's epochs on zero-filled images, whose
reconstruction of a zero-filled image fills its holes; ``SimpleImputer(mean)``;
``KNNImputer()`` (5 neighbours); ``IterativeImputer(n_nearest_features=50, max_iter=5,
min_value=0, max_value=1)``, since its default (all 783 other pixels per pixel, 10 rounds)
is out of reach on MNIST-sized data: ``--iterative-default-rows`` times one default round.
``GradientFlowImputer(random_state=seed)`` with every other parameter at its default (the
default encoder, whose ``loss='auto'`` chooses bce on images, 10 epochs,
``code_prior='auto'``; before 0.10.0 an mse encoder), "GFE (defaults)", runs only when
``--methods`` names it. ``--methods`` runs a subset (the inpainting grid needs GFE and KNN);
``--no-accuracy`` leaves out the classifier and the imputing of the training images.

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
# What a user gets from GradientFlowImputer(random_state=seed): run on request only.
EXTRA_METHODS = ("GFE (defaults)",)
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


def make_imputers(
    n_components,
    epochs,
    seed,
    fit_max_steps=None,
    code_prior=0.0,
    n_starts=1,
    hidden=None,
    fit_hide_fraction=0.0,
    n_estimators=1,
    n_jobs=None,
):
    # batch_size, fit_stop_tol and fit_max_steps default to the values of the published run
    # (0.3.0's defaults; 0.4 caps the training flows at 25 steps: --fit-max-steps 25).
    decoder = {} if hidden is None else {"hidden_layer_sizes": tuple(hidden)}
    encoder = GradientFlowEncoder(
        n_components=n_components,
        **decoder,
        loss="bce",
        solver="lbfgs",
        learning_rate=1e-3,
        batch_size=128,
        fit_stop_tol=1e-2,
        fit_max_steps=fit_max_steps,
        fit_hide_fraction=fit_hide_fraction,
        max_iter=epochs,
        device="cpu",
        random_state=seed,
        # The imputation figures were measured without the encoder's own prior (the
        # imputer's code_prior is its own, estimated from the codes).
        code_prior=0.0,
    )
    gfe = dict(
        encoder=encoder,
        keep_empty_features=True,
        code_prior=code_prior,
        n_starts=n_starts,
        n_estimators=n_estimators,
        n_jobs=n_jobs,
        random_state=seed,
    )
    return {
        "GFE": GradientFlowImputer(**gfe),
        "GFE (complete fit)": GradientFlowImputer(**gfe),
        "GFE (defaults)": GradientFlowImputer(keep_empty_features=True, random_state=seed),
        "AE zero-fill": ZeroFilledAutoencoder(
            n_components=n_components,
            **decoder,
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
    for key in ("epochs", "n_components", "fit_max_steps"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings.setdefault("fit_max_steps", None)
    settings["code_prior"] = args.code_prior
    settings["n_starts"] = args.n_starts
    settings["hidden"] = args.hidden
    settings["fit_hide_fraction"] = args.fit_hide_fraction
    settings["n_estimators"] = args.n_estimators
    result = {
        "n_train": len(X_train),
        "n_test": len(X_test),
        "side": side,
        "methods": {},
        "gfe": settings,
    }
    filled_for_grid = {}
    imputers = make_imputers(
        settings["n_components"],
        settings["epochs"],
        args.seed,
        settings["fit_max_steps"],
        settings["code_prior"],
        settings["n_starts"],
        settings["hidden"],
        settings["fit_hide_fraction"],
        settings["n_estimators"],
        args.n_jobs,
    )
    for method, imputer in imputers.items():
        if method not in args.methods:
            continue
        fit_on = X_train if method == "GFE (complete fit)" else train_holes
        _, fit_seconds = timed(imputer.fit, fit_on)
        classifier, train_seconds = None, None
        if not args.no_accuracy:
            train_filled, train_seconds = timed(imputer.transform, train_holes)
            classifier = LogisticRegression(max_iter=300).fit(train_filled, y_train)
        entry = {
            "code_prior": getattr(imputer, "code_prior_", None),
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
                "accuracy": None if classifier is None else float(classifier.score(filled, y_test)),
            }
            filled_for_grid.setdefault(pattern, {})[method] = filled
        result["methods"][method] = entry
        print(
            f"  {name} {method}: fit {fit_seconds:.1f} s, train "
            + ("-" if train_seconds is None else f"{train_seconds:.1f} s")
            + f", tests {entry['impute_test_s']:.1f} s"
            + ("" if entry["code_prior"] is None else f", code_prior_ {entry['code_prior']:g}"),
            flush=True,
        )
    if not args.no_accuracy:
        complete = LogisticRegression(max_iter=300).fit(X_train, y_train)
        result["accuracy_complete"] = float(complete.score(X_test, y_test))
    if args.out is not None and {"GFE", "KNN"} <= set(args.methods):
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
        f"{gfe['epochs']} epochs"
        + ("" if gfe["fit_max_steps"] is None else f", fit_max_steps={gfe['fit_max_steps']}")
        + (
            f", fit_hide_fraction={gfe['fit_hide_fraction']:g}"
            if gfe.get("fit_hide_fraction")
            else ""
        )
        + (f", code_prior={gfe['code_prior']}" if gfe["code_prior"] else "")
        + (f", n_starts={gfe['n_starts']}" if gfe.get("n_starts", 1) > 1 else "")
        + (f", n_estimators={gfe['n_estimators']}" if gfe.get("n_estimators", 1) > 1 else "")
        + ")\n"
    )
    metrics = (
        ("rmse", "hidden-pixel RMSE"),
        ("bce", "hidden-pixel BCE"),
        ("accuracy", "downstream accuracy"),
    )
    for metric, label in metrics[:2] if "accuracy_complete" not in result else metrics:
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
        times = [result["methods"][m][key] for m in methods]
        print(f"| {label} | " + " | ".join("-" if t is None else f"{t:.1f}" for t in times) + " |")
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
    parser.add_argument(
        "--n-components",
        type=int,
        default=None,
        help="GFE and autoencoder code size for every data set (default: GFE_SETTINGS)",
    )
    parser.add_argument(
        "--fit-max-steps",
        type=lambda text: None if text.lower() == "none" else int(text),
        default=None,
        help="the GFE's fit_max_steps (default: none, as in the published run; 0.4's is 25)",
    )
    parser.add_argument(
        "--fit-hide-fraction",
        type=float,
        default=0.0,
        help="the GFE's fit_hide_fraction (default 0: the flow sees every observed entry)",
    )
    parser.add_argument(
        "--code-prior",
        type=lambda text: text if text == "auto" else float(text),
        default=0.0,
        help="GradientFlowImputer's code_prior for the GFE, a weight or 'auto' (default 0: none)",
    )
    parser.add_argument(
        "--n-starts",
        type=int,
        default=1,
        help="GradientFlowImputer's n_starts for the GFE (default 1: the encoder's own start)",
    )
    parser.add_argument(
        "--n-estimators",
        type=int,
        default=1,
        help="GradientFlowImputer's n_estimators for the GFE (default 1: no ensemble)",
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        help="GradientFlowImputer's n_jobs: members fitted and run in that many processes",
    )
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=None,
        help="hidden layer widths of the GFE's and the autoencoder's decoder "
        "(default: the estimators', 150 300 600)",
    )
    parser.add_argument(
        "--no-accuracy",
        action="store_true",
        help="skip the downstream classifier (and imputing the training images it needs)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS + EXTRA_METHODS,
        default=list(METHODS),
        help=f"the imputers to run (default: all but {', '.join(EXTRA_METHODS)})",
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
