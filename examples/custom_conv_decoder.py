"""A custom convolutional decoder: GFE needs only a decoder, any ``torch.nn.Module``
=================================================================================

The decoder maps codes ``(n, n_components)`` to images ``(n, 1, 8, 8)`` (logits: on pixels
in ``[0, 1]`` the default ``loss='auto'`` chooses ``'bce'``); ``X`` stays two-dimensional
and its rows are reshaped to the decoder's output shape. ``fit`` trains a copy of the
module, so the one passed in is left as it was. The same module, with a mirror-image
encoder, trains an autoencoder::

    python examples/custom_conv_decoder.py
"""

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder


class ConvDecoder(torch.nn.Module):
    """Codes to 8x8 images: a linear layer to 16 channels of 4x4, then a 2x upsampling."""

    def __init__(self, n_components):
        super().__init__()
        self.fc = torch.nn.Linear(n_components, 16 * 4 * 4)
        self.up = torch.nn.ConvTranspose2d(16, 1, kernel_size=2, stride=2)

    def forward(self, z):
        return self.up(torch.nn.functional.elu(self.fc(z)).reshape(-1, 16, 4, 4))


class ConvEncoder(torch.nn.Module):
    """8x8 images to codes, the decoder's mirror image (for the autoencoder)."""

    def __init__(self, n_components):
        super().__init__()
        self.down = torch.nn.Conv2d(1, 16, kernel_size=2, stride=2)
        self.fc = torch.nn.Linear(16 * 4 * 4, n_components)

    def forward(self, x):
        return self.fc(torch.nn.functional.elu(self.down(x)).flatten(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--max-samples", type=int, default=5000, help="training images per model (default: 5000)"
    )
    args = parser.parse_args()

    X = (load_digits().data / 16.0).astype(np.float32)
    X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)
    k = 10
    models = {
        "GFE, conv decoder": GradientFlowEncoder(
            n_components=k,
            decoder=ConvDecoder(k),
            solver="lbfgs",
            max_samples=args.max_samples,
            random_state=0,
        ),
        "AE, conv encoder and decoder": AutoEncoderBaseline(
            n_components=k,
            decoder=ConvDecoder(k),
            encoder=ConvEncoder(k),
            max_samples=args.max_samples,
            random_state=0,
        ),
    }
    for name, model in models.items():
        model.fit(X_train)
        print(
            f"{name:<30} held-out cross-entropy {-model.score(X_test):.4f}, "
            f"decoder parameters {sum(p.numel() for p in model.decoder_.parameters())}"
        )


if __name__ == "__main__":
    main()
