"""Mixed: encode by gradient flow through an autoencoder's decoder, then fine-tune it
==================================================================================

An autoencoder trains cheaply, since encoding is one forward pass, but its encoder only
approximates the inverse of its decoder. ``GradientFlowEncoder.from_autoencoder`` keeps the
trained decoder and finds each code by gradient flow instead (the papers' "Mixed" column);
with ``warm_start=True`` a further ``fit`` trains that decoder by GFE::

    python examples/mixed_decoder.py
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--ae-samples",
        type=int,
        default=30000,
        help="training images of the autoencoder (default: 30000)",
    )
    parser.add_argument(
        "--gfe-samples",
        type=int,
        default=1000,
        help="training images of the GFE fine-tuning (default: 1000)",
    )
    args = parser.parse_args()

    X = (load_digits().data / 16.0).astype(np.float32)
    X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)
    ae = AutoEncoderBaseline(
        n_components=10, hidden_layer_sizes=(32, 64), max_samples=args.ae_samples, random_state=0
    ).fit(X_train)
    print(f"AE, codes from its encoder     held-out cross-entropy {-ae.score(X_test):.4f}")

    mixed = GradientFlowEncoder.from_autoencoder(ae, solver="lbfgs")
    print(f"Mixed, codes by gradient flow  held-out cross-entropy {-mixed.score(X_test):.4f}")

    mixed.set_params(warm_start=True, max_samples=args.gfe_samples).fit(X_train)
    print(
        f"Mixed, decoder fine-tuned by GFE on {args.gfe_samples} images: {-mixed.score(X_test):.4f}"
    )


if __name__ == "__main__":
    main()
