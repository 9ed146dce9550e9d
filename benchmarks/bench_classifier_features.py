"""Codes as classifier features: GradientFlowEncoder, the autoencoder, PCA (and UMAP).

Usage::

    python benchmarks/bench_classifier_features.py --dataset digits
    python benchmarks/bench_classifier_features.py --dataset mnist --n-train 10000 --n-test 10000
    python benchmarks/bench_classifier_features.py --dataset digits --code-prior 0 0.1 1

Each model turns images into ``--n-components`` features (default: 10 on digits, 20 on the
others); the features go through ``StandardScaler`` into
``LogisticRegression(max_iter=3000)`` and into ``KNeighborsClassifier()``. On digits (scaled
by 16, then ``MinMaxScaler(clip=True)`` inside each fold) the accuracies are stratified
cross-validation means (``--folds``, 5); on MNIST and Fashion-MNIST the models are fitted on
the first ``--n-train`` training images and scored on the first ``--n-test`` test images.
Prints one table: accuracy of each classifier, held-out BCE (minus ``score``; the mean over
folds on digits), and fit and transform seconds (wall, summed over folds), all measured in
this run. ``GradientFlowEncoder`` runs at its defaults, once per ``--code-prior`` value
given (``code_prior`` is its only setting changed), once per ``--code-init`` value given
(e.g. ``zeros``, the start of 0.9, with the other defaults), and with ``--encode-prior``
trained without a prior and encoding with one; the autoencoder at its defaults; UMAP
only where ``umap-learn`` is installed. ``--max-iter`` shortens both networks' training (the
tests' smoke run).
"""

import argparse
import json
import platform
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

import gfe_sklearn
from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder
from gfe_sklearn.datasets import load_fashion_mnist, load_mnist

CLASSIFIERS = {
    "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
    "kneighbors": lambda: make_pipeline(StandardScaler(), KNeighborsClassifier()),
}
LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}


class PriorAtEncoding:
    """``GradientFlowEncoder`` trained without a prior whose codes are found with one: MAP
    codes on a decoder that never saw the prior (``code_prior`` set after ``fit``)."""

    def __init__(self, encoder, weight):
        self.encoder, self.weight = encoder, weight

    def fit_transform(self, X):
        self.encoder.fit(X).set_params(code_prior=self.weight)
        return self.encoder.transform(X)

    def transform(self, X):
        return self.encoder.transform(X)

    def score(self, X):
        return self.encoder.score(X)  # the reconstruction alone, at the MAP codes


def models(n_components, code_priors, seed, max_iter=None, encode_priors=(), code_inits=()):
    """The feature makers, by row label: fresh instances for each split."""
    epochs = {} if max_iter is None else {"max_iter": max_iter}
    makers = {}
    for start in code_inits:
        makers[f"GFE code_init={start}"] = lambda start=start: GradientFlowEncoder(
            n_components=n_components, random_state=seed, code_init=start, **epochs
        )
    for weight in encode_priors:
        makers[f"GFE, prior {weight:g} at encoding only"] = lambda weight=weight: PriorAtEncoding(
            GradientFlowEncoder(n_components=n_components, random_state=seed, **epochs), weight
        )
    for prior in code_priors:
        label = "GradientFlowEncoder()" if prior is None else f"GFE code_prior={prior:g}"
        makers[label] = lambda prior=prior: GradientFlowEncoder(
            n_components=n_components,
            random_state=seed,
            **epochs,
            **({} if prior is None else {"code_prior": prior}),
        )
    makers["AutoEncoderBaseline()"] = lambda: AutoEncoderBaseline(
        n_components=n_components, random_state=seed, **epochs
    )
    makers["PCA"] = lambda: PCA(n_components, random_state=seed)
    try:
        import umap
    except ImportError:
        pass
    else:
        makers["UMAP"] = lambda: umap.UMAP(n_components=n_components, random_state=seed)
    return makers


def splits(args):
    """(train X, train y, test X, test y) for each fold or the one train/test split."""
    if args.dataset == "digits":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        for train, test in StratifiedKFold(args.folds).split(X, y):
            scaler = MinMaxScaler(clip=True).fit(X[train])
            yield scaler.transform(X[train]), y[train], scaler.transform(X[test]), y[test]
        return
    load = LOADERS[args.dataset]
    X, y = load(subset="train", return_X_y=True)
    X_test, y_test = load(subset="test", return_X_y=True)
    n, m = args.n_train, args.n_test
    yield X[:n].reshape(n, -1), y[:n], X_test[:m].reshape(m, -1), y_test[:m]


def measure(make, folds):
    """Mean accuracies and BCE over the folds, summed fit and transform seconds."""
    accuracies, losses, fit_s, transform_s = {name: [] for name in CLASSIFIERS}, [], 0.0, 0.0
    for X, y, X_test, y_test in folds:
        model = make()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            codes = model.fit_transform(X)
        fit_s += time.perf_counter() - start
        start = time.perf_counter()
        test_codes = model.transform(X_test)
        transform_s += time.perf_counter() - start
        for name, classifier in CLASSIFIERS.items():
            accuracies[name].append(classifier().fit(codes, y).score(test_codes, y_test))
        if hasattr(model, "score") and not isinstance(model, PCA):
            losses.append(-model.score(X_test))
    return {
        **{name: float(np.mean(values)) for name, values in accuracies.items()},
        "bce": float(np.mean(losses)) if losses else None,
        "fit_s": fit_s,
        "transform_s": transform_s,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["digits", *LOADERS], default="digits")
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-test", type=int, default=10000)
    parser.add_argument("--n-components", type=int, default=None)
    parser.add_argument(
        "--code-prior",
        type=float,
        nargs="*",
        default=None,
        help="fit GradientFlowEncoder once per value (default: once, at its default)",
    )
    parser.add_argument(
        "--encode-prior",
        type=float,
        nargs="*",
        default=[],
        help="also fit GradientFlowEncoder without a prior and encode with this weight",
    )
    parser.add_argument(
        "--code-init",
        nargs="*",
        default=[],
        choices=["auto", "encoder", "zeros"],
        help="also fit GradientFlowEncoder with this code_init (e.g. 'zeros', 0.9's default)",
    )
    parser.add_argument("--models", nargs="*", default=None, help="row labels to keep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5, help="digits' cross-validation folds")
    parser.add_argument(
        "--max-iter", type=int, default=None, help="epochs of both networks (default: theirs)"
    )
    parser.add_argument("--json", default=None, help="also write the table here")
    args = parser.parse_args()
    n_components = args.n_components or (10 if args.dataset == "digits" else 20)
    folds = list(splits(args))
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
        f"thread(s), gfe-sklearn {gfe_sklearn.__version__}; {args.dataset}, {n_components} "
        f"components, {len(folds)} split(s) of {len(folds[0][0])} training rows"
    )
    makers = models(
        n_components,
        args.code_prior or [None],
        args.seed,
        args.max_iter,
        args.encode_prior,
        args.code_init,
    )
    if args.models:
        makers = {label: make for label, make in makers.items() if label in args.models}
    print("| features | logistic | kneighbors | held-out BCE | fit s | transform s |")
    print("|---|---:|---:|---:|---:|---:|")
    table = {}
    for label, make in makers.items():
        row = table[label] = measure(make, folds)
        bce = "–" if row["bce"] is None else f"{row['bce']:.4f}"
        print(
            f"| {label} | {row['logistic']:.4f} | {row['kneighbors']:.4f} | {bce} | "
            f"{row['fit_s']:.1f} | {row['transform_s']:.2f} |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"dataset": args.dataset, "n_components": n_components, "rows": table}, handle
            )


if __name__ == "__main__":
    main()
