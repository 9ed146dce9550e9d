"""An ensemble imputer's members in parallel processes (``n_jobs``) against one process.

Usage::

    python benchmarks/bench_imputer_jobs.py [--n-estimators 2] [--n-jobs 2] [--epochs 15]
        [--repeats 3]

On scikit-learn's digits (scaled to [0, 1], 1,297 training rows with 30% of their entries
missing at random, 500 held-out rows with 50% missing), fits
``GradientFlowImputer(n_estimators=E)`` on the benchmark's image encoder (bce, L-BFGS,
``fit_hide_fraction=0.8``, 12 components) and imputes the held-out rows, once with
``n_jobs=None`` and once with ``n_jobs=J``, alternating, ``--repeats`` times. Prints the
seconds of each (fit, transform), their ratio pair by pair, the hidden-entry RMSE and
whether both imputations are identical: the speed-up is only worth quoting at the same
result. The ratio needs J free cores; on a loaded machine it says little.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from gfe_sklearn import GradientFlowEncoder, GradientFlowImputer


def split(seed=0):
    rng = np.random.RandomState(seed)
    X = load_digits().data / 16.0
    order = rng.permutation(len(X))
    train, test = X[order[:1297]], X[order[1297:]]
    train_holes = np.where(rng.uniform(size=train.shape) < 0.3, np.nan, train)
    hidden = rng.uniform(size=test.shape) < 0.5
    return train_holes, test, hidden


def imputer(args, n_jobs):
    encoder = GradientFlowEncoder(
        n_components=12,
        loss="bce",
        solver="lbfgs",
        learning_rate=1e-3,
        fit_max_steps=25,
        fit_hide_fraction=0.8,
        max_iter=args.epochs,
        device="cpu",
        random_state=0,
    )
    return GradientFlowImputer(
        encoder=encoder,
        code_prior="auto",
        n_estimators=args.n_estimators,
        n_jobs=n_jobs,
        random_state=0,
    )


def timed_run(args, n_jobs, data):
    train_holes, test, hidden = data
    model = imputer(args, n_jobs)
    start = time.perf_counter()
    model.fit(train_holes)
    fitted = time.perf_counter()
    filled = model.transform(np.where(hidden, np.nan, test))
    done = time.perf_counter()
    rmse = float(np.sqrt(np.mean((filled[hidden] - test[hidden]) ** 2)))
    return fitted - start, done - fitted, rmse, filled


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-estimators", type=int, default=2)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    # 15 epochs leave training still improving: the timing, not the fit, is the point here.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    data = split()
    print(
        f"digits, n_estimators={args.n_estimators}, {args.epochs} epochs; "
        f"n_jobs=None vs n_jobs={args.n_jobs}; torch {torch.__version__}, one thread per process"
    )
    print(
        "| repeat | fit, 1 process | fit, parallel | transform, 1 | transform, parallel "
        "| total ratio | RMSE 1 / parallel | identical |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|---|")
    ratios = []
    for repeat in range(args.repeats):
        one = timed_run(args, None, data)
        many = timed_run(args, args.n_jobs, data)
        ratio = (one[0] + one[1]) / (many[0] + many[1])
        ratios.append(ratio)
        same = bool(np.array_equal(one[3], many[3]))
        print(
            f"| {repeat} | {one[0]:.1f} s | {many[0]:.1f} s | {one[1]:.1f} s | {many[1]:.1f} s "
            f"| {ratio:.2f}x | {one[2]:.4f} / {many[2]:.4f} | {same} |"
        )
    print(f"median speed-up, fit + transform: {np.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
