"""Quickstart: fit a gradient flow encoder, encode, decode, score, save and load
=============================================================================

Digits are scaled to ``[0, 1]``, where the default ``loss='auto'`` chooses ``'bce'`` (the
papers' cross-entropy of pixel intensities), and passed as float32, which trains a float32
model, about twice as fast as float64 on a CPU. ``max_samples`` stops training after that
many images; ``verbose=1`` prints a line per epoch::

    python examples/quickstart.py
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from gfe_sklearn import GradientFlowEncoder


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--max-samples", type=int, default=5000, help="training images (default: 5000)"
    )
    args = parser.parse_args()

    X = (load_digits().data / 16.0).astype(np.float32)
    X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)

    gfe = GradientFlowEncoder(
        n_components=10,
        hidden_layer_sizes=(32, 64),
        solver="lbfgs",
        max_samples=args.max_samples,
        random_state=0,
        verbose=1,
    )
    gfe.fit(X_train)

    codes = gfe.transform(X_test)  # one optimisation per image
    reconstructions = gfe.inverse_transform(codes)  # pixel probabilities
    print(f"codes {codes.shape} {codes.dtype}, reconstructions {reconstructions.shape}")
    print(
        f"held-out cross-entropy {-gfe.score(X_test):.4f} "
        f"(mean absolute pixel error {np.abs(reconstructions - X_test).mean():.4f})"
    )

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "digits.safetensors"
        gfe.save(path)  # a file that loading cannot make run code
        same = GradientFlowEncoder.load(path)
        assert np.array_equal(same.transform(X_test[:5]), codes[:5])
        print(f"saved and loaded {path.name}: the same codes")


if __name__ == "__main__":
    main()
