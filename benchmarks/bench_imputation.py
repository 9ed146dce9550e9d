"""Imputation benchmark: GradientFlowImputer vs mean, KNN, iterative, an autoencoder, anchors.

Usage::

    python benchmarks/bench_imputation.py [--datasets digits mnist fashion-mnist
        breast-cancer diabetes] [--n-train 5000] [--n-test 1000] [--epochs N]
        [--n-components K] [--fit-max-steps {N,none}] [--fit-hide-fraction F]
        [--code-prior C] [--n-starts S] [--n-estimators E] [--n-jobs J]
        [--miwae-epochs M] [--methods GFE KNN ...] [--out docs/imputation] [--threads 1]

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
default encoder: ``loss='auto'``, bce on images, ``fit_hide_fraction=0.8``, at least 15,000
samples seen, ``code_prior='auto'``; before 0.10.0 an mse encoder trained 10 epochs without
hidden entries; since 0.10 ``estimate='auto'``, which may average the decoded codes of the
training rows instead of reading each row's own code), "GFE (defaults)", and the same with
``estimate='mode'``, "GFE (mode)", run only when ``--methods`` names them. ``--methods``
runs a subset (the inpainting grid needs GFE and KNN); ``--no-accuracy`` leaves out the
classifier and the imputing of the training images.

The strongest published imputers, ``benchmarks/imputation_anchors.py``, also run only when
``--methods`` names them (MissForest costs hours on MNIST): "MissForest-style",
``IterativeImputer`` over ``ExtraTreesRegressor(n_estimators=20)``, ``max_iter=5``,
``n_nearest_features=50``, clipped to [0, 1]; "SoftImpute", soft-thresholded SVD with the
shrinkage chosen on 10% of the observed training entries held out, new rows imputed by the
fitted subspace's fixed point (a ridge solve on their observed entries), clipped to [0, 1];
"MIWAE", the importance-weighted deep latent variable model (latent size the GFE's
components, 128 hidden units, K=20, batch 64, Adam at 1e-3, L=1000 importance samples per
imputed row) with a Bernoulli observation model on images (its log-likelihood is minus the
bce) and a Student-t on tables, Student-t q, for the epochs of ``MIWAE_SETTINGS``
(``--miwae-epochs`` overrides them): about the GFE's fit time on one thread.

digits: scikit-learn's 1,797 8x8 digits scaled to [0, 1], 500 held out. MNIST and
Fashion-MNIST: ``--n-train`` images drawn from the training set, ``--n-test`` from the test
set (``GFE_SKLEARN_DATA`` names the data folder). Writes ``imputation.json`` and one
inpainting grid per data set (observed / GFE / KNN / truth) to ``--out``.

Tables, breast-cancer (569 x 30, labels) and diabetes (442 x 10, a regression target):
scikit-learn's data, each feature min-max scaled to [0, 1] over all rows (the range only, so
that every value lies in [0, 1] and the clipped imputers and the bce apply), a quarter of
the rows held out (a permutation by the seed). Two patterns, MCAR 20% and MCAR 50%; for
each, every imputer is fitted anew on the training rows missing that share at random and
imputes test rows missing the same share. Reported: RMSE on the hidden test entries, and
(without ``--no-accuracy``) the accuracy of a logistic regression, or on diabetes the R^2 of
a ridge regression, trained on the imputed training rows; fit and impute times per pattern.
The GFE's settings for tables in ``GFE_SETTINGS``: a third of the features as components,
50 epochs, the bce loss, ``code_prior='auto'`` (``--code-prior`` overrides it). In
``imputation.json`` a table's entry adds ``n_features``, ``patterns``, ``downstream``
("accuracy" or "r2", the key of the downstream score) and, per pattern, ``train_pattern``,
``fit_s``, ``impute_train_s`` and ``impute_test_s``; the method's own times are their sums.
An image data set's entry is as before, plus ``miwae`` (the MIWAE settings) when MIWAE
runs. SoftImpute's and MIWAE's entries (a table's per pattern) add ``fitted``: the
shrinkage and rank chosen, the epochs run and the final loss.
"""

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge

import gfe_sklearn
from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder, GradientFlowImputer
from gfe_sklearn._scoring import hidden_entry_error
from gfe_sklearn.datasets import load_fashion_mnist, load_mnist
from gfe_sklearn.plotting import subplots

PATTERNS = ("mcar30", "mcar50", "mcar80", "square", "lower-half")
TRAIN_PATTERN = "mcar30"
# Tables: the imputers are fitted once per pattern, on training rows missing that share.
TABLES = ("breast-cancer", "diabetes")
TABLE_PATTERNS = ("mcar20", "mcar50")
METHODS = ("GFE", "GFE (complete fit)", "AE zero-fill", "mean", "KNN", "iterative")
# What a user gets from GradientFlowImputer(random_state=seed), and the strongest published
# imputers (benchmarks/imputation_anchors.py): run on request only, which keeps the default
# run (and the commands the docs quote) as they were.
ANCHORS = ("MissForest-style", "SoftImpute", "MIWAE")
EXTRA_METHODS = ("GFE (defaults)", "GFE (mode)", *ANCHORS)
# An autoencoder epoch costs a small fraction of a GFE epoch; it gets more of them.
AE_EPOCHS_PER_GFE_EPOCH = 10
# About 15,000-20,000 training images seen per fit; digits' 64 pixels, 80% of them missing,
# leave a 20-number code underdetermined, so it gets 10.
# Tables: about a third of the features as components, the bce loss and the imputer's
# code_prior='auto' (features in [0, 1]; test RMSE at MCAR 20%, seed 0, on breast-cancer /
# diabetes: bce + auto 0.061 / 0.236, mse + auto 0.081 / 0.247, bce 0.089 / 0.265, mse
# 0.108 / 0.421); --code-prior overrides the prior here as everywhere.
GFE_SETTINGS = {
    "digits": {"n_components": 10, "epochs": 15},
    "mnist": {"n_components": 20, "epochs": 3},
    "fashion-mnist": {"n_components": 20, "epochs": 3},
    "breast-cancer": {"n_components": 10, "epochs": 50, "code_prior": "auto"},
    "diabetes": {"n_components": 3, "epochs": 50, "code_prior": "auto"},
}
# MIWAE: the GFE's code size as its latent size; images in [0, 1] under a Bernoulli model
# (the log-likelihood is minus the GFE's bce), tables under the authors' Student-t. Images:
# epochs that make its fit cost about the GFE's ("GFE" above) on one thread. Tables: 200
# epochs (1,400 and 1,000 Adam steps), 2-5x the GFE's fit; 500 did no better (worse on
# diabetes: RMSE 0.208 against 0.196 at MCAR 20%).
MIWAE_SETTINGS = {
    "digits": {"observation": "bernoulli", "epochs": 170},
    "mnist": {"observation": "bernoulli", "epochs": 25},
    "fashion-mnist": {"observation": "bernoulli", "epochs": 25},
    "breast-cancer": {"observation": "studentt", "epochs": 200},
    "diabetes": {"observation": "studentt", "epochs": 200},
}


def _anchors():
    """benchmarks/imputation_anchors.py, whether this file runs as a script or is loaded by path."""
    folder = str(Path(__file__).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import imputation_anchors

    return imputation_anchors


def missing_mask(pattern, n_images, side, rng):
    """Which pixels of ``n_images`` square images of ``side`` pixels are missing."""
    shape = (n_images, side, side)
    if pattern.startswith("mcar"):
        return mcar_mask(pattern, shape, rng).reshape(n_images, -1)
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


def mcar_mask(pattern, shape, rng):
    """Entries missing completely at random, the share the pattern's name gives (mcar30)."""
    return rng.uniform(size=shape) < int(pattern[4:]) / 100


def load(name, n_train, n_test, rng):
    if name in TABLES:
        loader = {"breast-cancer": load_breast_cancer, "diabetes": load_diabetes}[name]
        X, y = loader(return_X_y=True)
        # Min-max scaled over all rows (the range only, the same for every imputer), so that
        # every entry lies in [0, 1] as the images' pixels do and the clipped imputers apply.
        low, high = X.min(axis=0), X.max(axis=0)
        X = ((X - low) / np.where(high > low, high - low, 1.0)).astype(np.float32)
        order = rng.permutation(len(X))
        test, train = order[: len(X) // 4], order[len(X) // 4 :]
        return X[train], y[train], X[test], y[test]
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
    loss="bce",
    miwae=None,
):
    # batch_size, fit_stop_tol and fit_max_steps default to the values of the published run
    # (0.3.0's defaults; 0.4 caps the training flows at 25 steps: --fit-max-steps 25).
    decoder = {} if hidden is None else {"hidden_layer_sizes": tuple(hidden)}
    miwae = {"observation": "bernoulli", "epochs": 25} if miwae is None else miwae
    encoder = GradientFlowEncoder(
        n_components=n_components,
        **decoder,
        loss=loss,
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
    anchors = _anchors()
    # Every data set here lies in [0, 1]: the imputers that can clip do.
    unit = dict(min_value=0, max_value=1)
    return {
        "GFE": GradientFlowImputer(**gfe),
        "GFE (complete fit)": GradientFlowImputer(**gfe),
        "GFE (defaults)": GradientFlowImputer(keep_empty_features=True, random_state=seed),
        "GFE (mode)": GradientFlowImputer(
            estimate="mode", keep_empty_features=True, random_state=seed
        ),
        "AE zero-fill": ZeroFilledAutoencoder(
            n_components=n_components,
            **decoder,
            loss=loss,
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
            **unit,
            keep_empty_features=True,
            random_state=seed,
        ),
        "MissForest-style": anchors.MissForestImputer(
            n_estimators=20, max_iter=5, n_nearest_features=50, **unit, random_state=seed
        ),
        "SoftImpute": anchors.SoftImputer(**unit, random_state=seed),
        "MIWAE": anchors.MIWAEImputer(
            n_latent=n_components,
            hidden=128,
            observation=miwae["observation"],
            posterior="studentt",
            n_importance=20,
            n_impute_samples=1000,
            batch_size=64,
            learning_rate=1e-3,
            epochs=miwae["epochs"],
            **unit,
            random_state=seed,
        ),
    }


def fitted_summary(method, imputer):
    """What an imputer chose in its fit (SoftImpute's shrinkage, MIWAE's epochs, the GFE
    imputer's estimate), or None."""
    if method == "SoftImpute":
        return {"shrinkage": imputer.shrinkage_, "rank": imputer.rank_}
    if method == "MIWAE":
        return {"epochs": imputer.n_epochs_, "final_loss": imputer.loss_curve_[-1]}
    if hasattr(imputer, "estimate_"):
        return {"estimate": imputer.estimate_, "n_neighbors": imputer.n_neighbors_}
    return None


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def run_dataset(name, args, rng):
    X_train, y_train, X_test, y_test = load(name, args.n_train, args.n_test, rng)
    table = name in TABLES
    if table:
        # One fit per pattern, on training rows missing that share.
        side = None
        groups = []
        for pattern in TABLE_PATTERNS:
            train_mask = mcar_mask(pattern, X_train.shape, rng)
            groups.append((pattern, train_mask, {pattern: mcar_mask(pattern, X_test.shape, rng)}))
    else:
        side = int(round(np.sqrt(X_train.shape[1])))
        train_mask = missing_mask(TRAIN_PATTERN, len(X_train), side, rng)
        tests = {p: missing_mask(p, len(X_test), side, rng) for p in PATTERNS}
        groups = [(TRAIN_PATTERN, train_mask, tests)]
    settings = dict(GFE_SETTINGS[name])
    for key in ("epochs", "n_components", "fit_max_steps"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings.setdefault("fit_max_steps", None)
    settings.setdefault("loss", "bce")
    if args.code_prior is not None:
        settings["code_prior"] = args.code_prior
    settings.setdefault("code_prior", 0.0)
    settings["n_starts"] = args.n_starts
    settings["hidden"] = args.hidden
    settings["fit_hide_fraction"] = args.fit_hide_fraction
    settings["n_estimators"] = args.n_estimators
    miwae = dict(MIWAE_SETTINGS[name])
    if args.miwae_epochs is not None:
        miwae["epochs"] = args.miwae_epochs
    result = {
        "n_train": len(X_train),
        "n_test": len(X_test),
        "side": side,
        "methods": {},
        "gfe": settings,
    }
    if table:
        result["n_features"] = X_train.shape[1]
        result["patterns"] = list(TABLE_PATTERNS)
    if "MIWAE" in args.methods:
        result["miwae"] = miwae
    # A regression target (diabetes) gets a ridge regression's R^2 downstream.
    regression = name == "diabetes"
    downstream = "r2" if regression else "accuracy"
    if table:
        result["downstream"] = downstream
    filled_for_grid = {}
    for train_pattern, train_mask, tests in groups:
        train_holes = np.where(train_mask, np.nan, X_train)
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
            loss=settings["loss"],
            miwae=miwae,
        )
        for method, imputer in imputers.items():
            if method not in args.methods:
                continue
            fit_on = X_train if method == "GFE (complete fit)" else train_holes
            _, fit_seconds = timed(imputer.fit, fit_on)
            model, train_seconds = None, None
            if not args.no_accuracy:
                train_filled, train_seconds = timed(imputer.transform, train_holes)
                model = Ridge() if regression else LogisticRegression(max_iter=300)
                model.fit(train_filled, y_train)
            entry = result["methods"].setdefault(
                method,
                {
                    "code_prior": getattr(imputer, "code_prior_", None),
                    "fit_s": 0.0,
                    "impute_train_s": None,
                    "impute_test_s": 0.0,
                    "patterns": {},
                },
            )
            entry["fit_s"] += fit_seconds
            summary = fitted_summary(method, imputer)
            if summary is not None and not table:
                entry["fitted"] = summary
            if train_seconds is not None:
                entry["impute_train_s"] = (entry["impute_train_s"] or 0.0) + train_seconds
            test_seconds = 0.0
            for pattern, mask in tests.items():
                holes = np.where(mask, np.nan, X_test)
                filled, seconds = timed(imputer.transform, holes)
                test_seconds += seconds
                scores = {"rmse": hidden_entry_error(X_test, filled, mask, "rmse")}
                if not table:
                    scores["bce"] = hidden_entry_error(X_test, filled, mask, "bce")
                scores[downstream] = None if model is None else float(model.score(filled, y_test))
                if table:
                    if summary is not None:
                        scores["fitted"] = summary
                    scores.update(
                        train_pattern=train_pattern,
                        fit_s=fit_seconds,
                        impute_train_s=train_seconds,
                        impute_test_s=seconds,
                    )
                entry["patterns"][pattern] = scores
                filled_for_grid.setdefault(pattern, {})[method] = filled
            entry["impute_test_s"] += test_seconds
            print(
                f"  {name} {method}"
                + (f" ({train_pattern})" if table else "")
                + f": fit {fit_seconds:.1f} s, train "
                + ("-" if train_seconds is None else f"{train_seconds:.1f} s")
                + f", tests {test_seconds:.1f} s"
                + ("" if entry["code_prior"] is None else f", code_prior_ {entry['code_prior']:g}")
                + "".join(
                    f", {key} {value:.4g}" if isinstance(value, float) else f", {key} {value}"
                    for key, value in (summary or {}).items()
                ),
                flush=True,
            )
    if not args.no_accuracy:
        complete = Ridge() if regression else LogisticRegression(max_iter=300)
        complete.fit(X_train, y_train)
        result[f"{downstream}_complete"] = float(complete.score(X_test, y_test))
    if args.out is not None and not table and {"GFE", "KNN"} <= set(args.methods):
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


def print_metric_table(result, methods, patterns, metric, lower_is_better):
    """One markdown row per pattern, one column per method, the best of each row in bold."""
    print("| pattern | " + " | ".join(methods) + " |")
    print("|---|" + "---:|" * len(methods))
    for pattern in patterns:
        values = [result["methods"][m]["patterns"][pattern][metric] for m in methods]
        best = min(values) if lower_is_better else max(values)
        cells = [f"**{v:.4f}**" if v == best else f"{v:.4f}" for v in values]
        print(f"| {pattern} | " + " | ".join(cells) + " |")
    print()


def print_tables(name, result):
    if "patterns" in result:
        print_table_tables(name, result)
        return
    methods = list(result["methods"])
    gfe = result["gfe"]
    # The settings of the benchmark's own GFE, in the header only when it ran.
    trained = {"GFE", "GFE (complete fit)", "AE zero-fill"} & set(methods)
    print(
        f"\n### {name} ({result['n_train']} training images with 30% MCAR missing, "
        f"{result['n_test']} test images"
        + (f"; GFE {gfe['n_components']} components, {gfe['epochs']} epochs" if trained else "")
        + (
            ""
            if not trained or gfe["fit_max_steps"] is None
            else f", fit_max_steps={gfe['fit_max_steps']}"
        )
        + (
            f", fit_hide_fraction={gfe['fit_hide_fraction']:g}"
            if trained and gfe.get("fit_hide_fraction")
            else ""
        )
        + (f", code_prior={gfe['code_prior']}" if trained and gfe["code_prior"] else "")
        + (f", n_starts={gfe['n_starts']}" if trained and gfe.get("n_starts", 1) > 1 else "")
        + (
            f", n_estimators={gfe['n_estimators']}"
            if trained and gfe.get("n_estimators", 1) > 1
            else ""
        )
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
        print_metric_table(result, methods, PATTERNS, metric, lower_is_better=metric != "accuracy")
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


def print_table_tables(name, result):
    """The tables of a tabular data set: one fit per pattern, RMSE (and a downstream score)."""
    methods = list(result["methods"])
    patterns = result["patterns"]
    gfe = result["gfe"]
    trained = {"GFE", "GFE (complete fit)", "AE zero-fill"} & set(methods)
    print(
        f"\n### {name} ({result['n_train']} training rows x {result['n_features']} features, "
        f"min-max scaled; every imputer fitted per pattern on the training rows missing that "
        f"share completely at random; {result['n_test']} test rows"
        + (
            f"; GFE {gfe['n_components']} components, {gfe['epochs']} epochs, loss "
            f"{gfe['loss']}, code_prior {gfe['code_prior']}"
            if trained
            else ""
        )
        + (f"; MIWAE {result['miwae']['epochs']} epochs" if "miwae" in result else "")
        + ")\n"
    )
    downstream = result["downstream"]
    metrics = [("rmse", "hidden-entry RMSE (lower is better)")]
    if f"{downstream}_complete" in result:
        label = "accuracy" if downstream == "accuracy" else "R^2 of a ridge regression"
        metrics.append(
            (
                downstream,
                f"downstream {label} (higher is better; complete rows: "
                f"{result[downstream + '_complete']:.3f})",
            )
        )
    for metric, label in metrics:
        print(label)
        print_metric_table(result, methods, patterns, metric, lower_is_better=metric == "rmse")
    print("time in seconds per pattern (fit on its training rows / impute its test rows)")
    print("| | " + " | ".join(methods) + " |")
    print("|---|" + "---:|" * len(methods))
    for key, label in (
        ("fit_s", "fit"),
        ("impute_train_s", "impute training"),
        ("impute_test_s", "impute test"),
    ):
        for pattern in patterns:
            times = [result["methods"][m]["patterns"][pattern][key] for m in methods]
            if all(t is None for t in times):
                continue
            cells = ("-" if t is None else f"{t:.2f}" for t in times)
            print(f"| {label} {pattern} | " + " | ".join(cells) + " |")
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
        default=None,
        help="GradientFlowImputer's code_prior for the GFE, a weight or 'auto' (default: "
        "GFE_SETTINGS', else 0: none)",
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
        "--miwae-epochs",
        type=int,
        default=None,
        help="MIWAE's epochs for every data set (default: MIWAE_SETTINGS)",
    )
    parser.add_argument(
        "--no-accuracy",
        action="store_true",
        help="skip the downstream classifier, or regressor on diabetes (and imputing the "
        "training rows it needs)",
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
