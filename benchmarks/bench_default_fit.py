"""Default fit on scikit-learn's digits: GradientFlowEncoder, the autoencoder, PCA.

Usage::

    python benchmarks/bench_default_fit.py [--with-zeros] [--with-0.9] [--with-0.4] \
        [--with-0.2] [--repeats 1] [--device auto]

Scales the 1,797 digits to [0, 1] (MinMaxScaler fitted on a 75% training split, clipped;
float64, as a user's pipeline gives them), fits each model with its default parameters on
the training split and transforms the held-out 25%. Prints fit seconds (wall and CPU),
transform seconds, epochs, the held-out BCE (minus ``score``) and each fit time as a ratio
to the autoencoder's, all in one run. ``--with-zeros`` adds GradientFlowEncoder encoding
from ``z = 0`` (``code_init='zeros'``, the default before 0.10: ``fit`` then distils no
encoder); ``--with-0.9`` adds it with version 0.9's defaults, also without a prior on the
codes (``code_prior=0``); ``--with-0.4`` adds both
estimators with version 0.4's arithmetic (the data's dtype, float64 here:
``compute_dtype=None``); ``--with-0.2`` adds GradientFlowEncoder with the defaults of
version 0.2 (AMD, batches of 32, lr 5e-4, 20 epochs, training flows to 1e-3, float64), which
takes several minutes. PCA (20 components) has no BCE; its held-out mean squared
reconstruction error is printed.
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

DEFAULTS_0_2 = {
    "solver": "amd",
    "batch_size": 32,
    "learning_rate": 5e-4,
    "max_iter": 20,
    "fit_stop_tol": 1e-3,
    "compute_dtype": None,
    "code_prior": 0.0,
    "code_init": "zeros",
}


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def measure(model, X_train, X_test):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, fit_wall, fit_cpu = timed(lambda: model.fit(X_train))
    _, transform_wall, _ = timed(lambda: model.transform(X_test))
    if isinstance(model, PCA):
        error = ((model.inverse_transform(model.transform(X_test)) - X_test) ** 2).mean()
        return fit_wall, fit_cpu, transform_wall, "-", f"MSE {error:.4f}"
    return fit_wall, fit_cpu, transform_wall, str(model.n_iter_), f"BCE {-model.score(X_test):.4f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--with-0.2",
        dest="old",
        action="store_true",
        help="also fit GradientFlowEncoder with version 0.2's defaults",
    )
    parser.add_argument(
        "--with-zeros",
        dest="zeros",
        action="store_true",
        help="also fit GradientFlowEncoder encoding from z = 0, as versions before 0.10 did",
    )
    parser.add_argument(
        "--with-0.9",
        dest="without_prior",
        action="store_true",
        help="also fit GradientFlowEncoder without a prior on its codes, as version 0.9 did",
    )
    parser.add_argument(
        "--with-0.4",
        dest="before",
        action="store_true",
        help="also fit both estimators in the data's dtype, as version 0.4 did",
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="auto", help="the estimators' device parameter")
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
        f"threads available (the estimators use n_threads=1 by default), torch "
        f"{torch.__version__}, scikit-learn {sklearn.__version__}, gfe-sklearn "
        f"{gfe_sklearn.__version__}, float64 data"
    )

    X = load_digits().data
    X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)
    scaler = MinMaxScaler(clip=True).fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    models = {
        "AutoEncoderBaseline()": lambda: AutoEncoderBaseline(device=args.device, random_state=0),
        "GradientFlowEncoder()": lambda: GradientFlowEncoder(device=args.device, random_state=0),
    }
    if args.zeros:
        models["GradientFlowEncoder(code_init='zeros')"] = lambda: GradientFlowEncoder(
            code_init="zeros", device=args.device, random_state=0
        )
    if args.without_prior:
        models["GradientFlowEncoder(<0.9: code_prior=0>)"] = lambda: GradientFlowEncoder(
            code_prior=0.0, code_init="zeros", device=args.device, random_state=0
        )
    if args.before:
        models["AutoEncoderBaseline(<0.4: float64>)"] = lambda: AutoEncoderBaseline(
            compute_dtype=None, random_state=0
        )
        models["GradientFlowEncoder(<0.4: float64>)"] = lambda: GradientFlowEncoder(
            compute_dtype=None, code_prior=0.0, code_init="zeros", random_state=0
        )
    if args.old:
        models["GradientFlowEncoder(<0.2 defaults>)"] = lambda: GradientFlowEncoder(
            **DEFAULTS_0_2, random_state=0
        )
    models["PCA(20)"] = lambda: PCA(20)

    rows = []
    for _ in range(args.repeats):
        for name, make in models.items():
            rows.append((name, *measure(make(), X_train, X_test)))
    ae_fit = np.median([r[1] for r in rows if r[0] == "AutoEncoderBaseline()"])
    print(
        f"{'model':36s} {'fit s':>8s} {'fit cpu s':>9s} {'/ AE':>6s} {'transform s':>11s} "
        f"{'epochs':>6s}  held-out"
    )
    for name, fit_s, fit_cpu, transform_s, epochs, quality in rows:
        print(
            f"{name:36s} {fit_s:8.2f} {fit_cpu:9.2f} {fit_s / ae_fit:6.2f} "
            f"{transform_s:11.3f} {epochs:>6s}  {quality}"
        )


if __name__ == "__main__":
    main()
