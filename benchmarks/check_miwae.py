"""Check: our MIWAEImputer reproduces the imputation error its authors report on breast cancer.

Usage::

    python benchmarks/check_miwae.py [--epochs 501] [--tolerance 0.32] [--seed 0]

The authors' TensorFlow 2 notebook (github.com/pamattei/miwae, "Tensorflow 2
notebooks/MIWAE_UCI_single_multiple-imputation.ipynb") reports, on scikit-learn's breast
cancer data (569 x 30), an imputation MSE of 0.286985 after 501 epochs and 0.286728 after
1001. Its protocol, repeated here: every column standardised (population standard
deviation); 50% of all entries removed completely at random, ``np.random.seed(1234)`` then
``np.random.choice(n * p, floor(0.5 * n * p), replace=False)``; latent dimension 10,
128 hidden units, Student-t observation model and Student-t q, K=20 importance samples,
batches of 32, Adam at 2e-4, the missing entries' constants learned; single imputation of
the same (in-sample) rows with L=10000 importance samples; MSE over the removed entries.
Its comparators are missForest (``IterativeImputer(ExtraTreesRegressor(n_estimators=100,
max_depth=8))``, ``max_iter=10``) and mean imputation, both run here.

The script exits with status 1 when our MSE exceeds ``--tolerance`` (0.32: the reported
0.287 plus 11%; missForest's here, 0.315-0.324 over two seeds, is about that, so a pass
says little more than "as good as missForest"; the figure printed is the measure).

Measured (``OMP_NUM_THREADS=1 python benchmarks/check_miwae.py``, one CPU thread)::

    breast cancer, 50% MCAR, standardised: imputation MSE on the 8535 removed entries
    | imputer | MSE |
    |---|---:|
    | our MIWAE (501 epochs, L=10000, seed 0) | 0.2907 |
    | MIWAE reported by its authors (epochs) | 0.2870 after 501, 0.2867 after 1001 |
    | missForest (ExtraTrees 100, depth 8) | 0.3154 |
    | mean | 1.0275 |
    our MIWAE: fit 155.6 s, impute 49.2 s; final minus bound per row 6.793
    PASS: 0.2907 <= 0.32

With ``--epochs 1001``: our MIWAE 0.2880 (fit 248.6 s, impute 37.1 s, minus bound 3.920),
PASS. With ``--seed 1`` (501 epochs): 0.2965, missForest 0.3237, PASS. The notebook's
bound: -6.91 after 501 epochs, -3.61 after 1001; ours -6.79, -3.92.
Times measured with another process on the machine's second core.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.impute import SimpleImputer

REPORTED_MSE = {501: 0.286985, 1001: 0.286728}


def _anchors():
    """benchmarks/imputation_anchors.py, whether this file runs as a script or is loaded by path."""
    folder = str(Path(__file__).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import imputation_anchors

    return imputation_anchors


def breast_cancer_with_holes():
    """The notebook's data: standardised columns, half of all entries missing (seed 1234)."""
    data = load_breast_cancer().data.astype(np.float32)
    full = (data - data.mean(axis=0)) / data.std(axis=0)
    n, p = full.shape
    removed = np.random.RandomState(1234).choice(n * p, int(np.floor(n * p * 0.5)), replace=False)
    holes = full.flatten()
    holes[removed] = np.nan
    return full, holes.reshape(n, p)


def mse(full, filled, missing):
    return float(np.mean((np.asarray(filled, dtype=np.float64) - full)[missing] ** 2))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=501)
    parser.add_argument("--n-impute-samples", type=int, default=10000)
    parser.add_argument("--tolerance", type=float, default=0.32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    anchors = _anchors()
    full, holes = breast_cancer_with_holes()
    missing = np.isnan(holes)

    miwae = anchors.MIWAEImputer(
        n_latent=10,
        hidden=128,
        observation="studentt",
        posterior="studentt",
        n_importance=20,
        n_impute_samples=args.n_impute_samples,
        batch_size=32,
        learning_rate=2e-4,
        epochs=args.epochs,
        learn_fill=True,
        # The data are standardised already, as in the notebook.
        standardize=False,
        random_state=args.seed,
    )
    start = time.perf_counter()
    miwae.fit(holes)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ours = mse(full, miwae.transform(holes), missing)
    impute_seconds = time.perf_counter() - start

    forest = anchors.MissForestImputer(
        n_estimators=100, max_depth=8, max_iter=10, random_state=args.seed
    )
    forest_mse = mse(full, forest.fit(holes).transform(holes), missing)
    mean_mse = mse(full, SimpleImputer().fit_transform(holes), missing)

    reported = ", ".join(f"{value:.4f} after {epochs}" for epochs, value in REPORTED_MSE.items())
    print(
        f"breast cancer, 50% MCAR, standardised: imputation MSE on the {missing.sum()} "
        f"removed entries"
    )
    print("| imputer | MSE |")
    print("|---|---:|")
    print(
        f"| our MIWAE ({miwae.n_epochs_} epochs, L={args.n_impute_samples}, seed {args.seed}) "
        f"| {ours:.4f} |"
    )
    print(f"| MIWAE reported by its authors (epochs) | {reported} |")
    print(f"| missForest (ExtraTrees 100, depth 8) | {forest_mse:.4f} |")
    print(f"| mean | {mean_mse:.4f} |")
    print(
        f"our MIWAE: fit {fit_seconds:.1f} s, impute {impute_seconds:.1f} s; "
        f"final minus bound per row {miwae.loss_curve_[-1]:.3f}"
    )
    passed = ours <= args.tolerance
    print(f"{'PASS' if passed else 'FAIL'}: {ours:.4f} {'<=' if passed else '>'} {args.tolerance}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
