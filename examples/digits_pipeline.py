"""Gradient flow codes as features: digits, GFE vs PCA vs an autoencoder
=====================================================================

Each encoder compresses scikit-learn's 8x8 digits (1,797 images, bundled with
scikit-learn, no download) to ``n_components`` numbers inside a pipeline

    MinMaxScaler(clip=True) -> encoder -> LogisticRegression

and the table reports the 5-fold cross-validated accuracy of the classifier on the codes
(mean and standard deviation over the folds; the folds are ``cross_val_score``'s default,
stratified and unshuffled), the same with the codes standardized first, the reconstruction
cross-entropy of the held-out fold (the papers' metric; lower is better), and the wall time.
The pixels themselves (64 features) are the reference.

Run it with::

    python examples/digits_pipeline.py            # 5-10 minutes on 2 CPU cores

``--gfe-epochs`` and ``--ae-epochs`` trade time for training; ``--n-jobs`` runs folds in
parallel processes (each with one torch thread).
"""

import argparse
import time
import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder


def run_fold(encoder, X, y, train, test):
    """Accuracies (raw and standardized codes) and held-out cross-entropy of one fold."""
    scaler = MinMaxScaler(clip=True).fit(X[train])
    X_train, X_test = scaler.transform(X[train]), scaler.transform(X[test])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # epochs are capped on purpose
        encoder = clone(encoder).fit(X_train)
    Z_train, Z_test = encoder.transform(X_train), encoder.transform(X_test)
    seconds = time.perf_counter() - start
    accuracies = []
    for head in ([], [StandardScaler()]):
        clf = make_pipeline(*head, LogisticRegression(max_iter=5000))
        accuracies.append(clf.fit(Z_train, y[train]).score(Z_test, y[test]))
    is_flow = isinstance(encoder, (GradientFlowEncoder, AutoEncoderBaseline))
    loss = -encoder.score(X_test) if is_flow else np.nan
    return accuracies[0], accuracies[1], loss, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--n-components", type=int, default=20)
    parser.add_argument("--gfe-epochs", type=int, default=5)
    parser.add_argument("--ae-epochs", type=int, default=50)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help="use only the first N digits (default: all 1,797)",
    )
    args = parser.parse_args()

    X, y = load_digits(return_X_y=True)
    X, y = X[: args.n_samples], y[: args.n_samples]
    k = args.n_components
    common = dict(n_components=k, random_state=0, device="auto")
    encoders = {
        "pixels (64)": FunctionTransformer(),
        f"PCA ({k})": PCA(n_components=k, random_state=0),
        f"GFE ({k}, {args.gfe_epochs} epochs)": GradientFlowEncoder(
            max_iter=args.gfe_epochs, **common
        ),
        f"AE ({k}, {args.ae_epochs} epochs)": AutoEncoderBaseline(
            max_iter=args.ae_epochs, **common
        ),
    }
    folds = list(StratifiedKFold(n_splits=5).split(X, y))
    print(
        f"digits: {X.shape[0]} images x {X.shape[1]} pixels, 5-fold CV, "
        f"LogisticRegression on the codes\n"
    )
    header = (
        f"{'encoder':<26} {'accuracy':>15} {'standardized':>15} "
        f"{'held-out BCE':>13} {'fit+encode s':>13} {'wall s':>7}"
    )
    print(header)
    print("-" * len(header))
    total = time.perf_counter()
    for name, encoder in encoders.items():
        start = time.perf_counter()
        results = np.array(
            Parallel(n_jobs=args.n_jobs)(
                delayed(run_fold)(encoder, X, y, train, test) for train, test in folds
            )
        )
        wall = time.perf_counter() - start
        raw, scaled, loss, seconds = results.T
        bce = f"{loss.mean():.4f}" if np.isfinite(loss).all() else "-"
        print(
            f"{name:<26} {raw.mean():.4f} ± {raw.std():.4f} {scaled.mean():.4f} ± "
            f"{scaled.std():.4f} {bce:>13} {seconds.sum():>13.1f} {wall:>7.1f}",
            flush=True,
        )
    print(f"\ntotal wall time {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
