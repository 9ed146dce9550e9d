"""Default fit on scikit-learn's digits: GradientFlowEncoder per solver, the autoencoder, PCA.

Usage::

    python benchmarks/bench_default_fit.py [--solvers amd lbfgs] [--threads 1] [--repeats 1]

Scales the 1,797 digits to [0, 1] (MinMaxScaler fitted on a 75% training split, clipped),
fits each model with its default parameters (only ``solver`` changes) on the training split
and transforms the held-out 25%. Prints fit and transform seconds, epochs, the held-out
BCE (minus ``score``) and each time as a ratio to the autoencoder's, all in one run. PCA
(20 components) has no BCE; its held-out mean squared reconstruction error is printed.
"""

import argparse
import platform
import time
import warnings

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

import gfe_sklearn
from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def measure(model, X_train, X_test):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, fit_seconds = timed(lambda: model.fit(X_train))
    _, transform_seconds = timed(lambda: model.transform(X_test))
    if isinstance(model, PCA):
        error = ((model.inverse_transform(model.transform(X_test)) - X_test) ** 2).mean()
        quality = f"MSE {error:.4f}"
        epochs = "-"
    else:
        quality = f"BCE {-model.score(X_test):.4f}"
        epochs = str(model.n_iter_)
    return fit_seconds, transform_seconds, epochs, quality


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solvers", nargs="+", default=["amd", "lbfgs"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
          f"thread(s), torch {torch.__version__}, scikit-learn {sklearn.__version__}, "
          f"gfe-sklearn {gfe_sklearn.__version__}, float64 data")

    X = load_digits().data
    X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)
    scaler = MinMaxScaler(clip=True).fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    models = {"AutoEncoderBaseline()": lambda: AutoEncoderBaseline(random_state=0)}
    for solver in args.solvers:
        models[f"GradientFlowEncoder(solver={solver!r})"] = \
            lambda solver=solver: GradientFlowEncoder(solver=solver, random_state=0)
    models["PCA(20)"] = lambda: PCA(20)

    rows = []
    for _ in range(args.repeats):
        for name, make in models.items():
            rows.append((name, *measure(make(), X_train, X_test)))
    ae_fit = np.median([r[1] for r in rows if r[0] == "AutoEncoderBaseline()"])
    print(f"{'model':38s} {'fit s':>8s} {'/ AE':>6s} {'transform s':>11s} {'epochs':>6s}  "
          "held-out")
    for name, fit_s, transform_s, epochs, quality in rows:
        print(f"{name:38s} {fit_s:8.2f} {fit_s / ae_fit:6.2f} {transform_s:11.3f} "
              f"{epochs:>6s}  {quality}")


if __name__ == "__main__":
    main()
