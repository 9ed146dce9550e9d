"""The encoder of ``code_init='encoder'``, distilled after ``fit`` on the codes that
``transform`` gives the training rows (at the training flows' tolerance).

During ``fit`` the encoder learns the codes of training flows cut short on a decoder that is
still changing; its guesses then start ``transform``'s flows no nearer their ends than
``z = 0`` does on some data. Trained afterwards on the endpoints of the final decoder, a few
L-BFGS steps from its guess reach the zero start's loss (docs/performance.md).
"""

import math

import numpy as np
import torch

# Distillation: at least this many passes over the training rows and this many updates (small
# data sets get more passes), with Adam at this learning rate; measured on MNIST,
# Fashion-MNIST and digits (docs/performance.md).
EPOCHS = 30
MIN_UPDATES = 300
LEARNING_RATE = 1e-3


def distil_encoder(estimator, X, parallel=None):
    """Train ``estimator.encoder_`` on the standardised codes ``transform`` gives ``X``,
    stopped at the training flows' tolerance ``fit_stop_tol``.

    Sets the encoder's ``code_mean`` and ``code_scale`` to those codes' mean and spread.
    The ranks of a data-parallel fit (``parallel``) encode a share of the rows each (a
    row's code does not depend on the batch, so they gather the codes one process finds),
    then each trains on all of them alike, and all take rank 0's weights.
    """
    encoder = estimator.encoder_
    # Codes at 1e-2 rather than transform's 1e-4 teach the encoder as well (eight steps from
    # its guess end at the same loss on MNIST) at two thirds of the encoding's cost.
    options = {**estimator._inference_options(), "stop_tol": estimator.fit_stop_tol}

    def encode(rows):
        return estimator._map_batches(
            rows, lambda target: estimator._encode(target, with_loss=False, **options)[0]
        )

    codes = encode(X) if parallel is None else parallel.map_rows(X, encode)
    codes = torch.as_tensor(codes, device=estimator.device_)
    with torch.no_grad():
        mean, spread = codes.mean(dim=0), codes.std(dim=0) if len(codes) > 1 else None
        encoder.code_mean.copy_(mean)
        if spread is not None:
            encoder.code_scale.copy_(torch.where(spread > 0, spread, torch.ones_like(spread)))
        standard = (codes - encoder.code_mean) / encoder.code_scale

    n_rows, batch_size = X.shape[0], min(estimator.batch_size, X.shape[0])
    batches = math.ceil(n_rows / batch_size)
    epochs = max(EPOCHS, math.ceil(MIN_UPDATES / batches))
    # Its own generator: the model's, which later fits continue, draws as without an encoder.
    rng = np.random.RandomState(estimator.n_samples_seen_ % 2**32)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=LEARNING_RATE)
    encoder.train()
    try:
        for _ in range(epochs):
            order = rng.permutation(n_rows)
            for start in range(0, n_rows, batch_size):
                rows = np.sort(order[start : start + batch_size])
                guess = estimator._encoder_input(encoder, estimator._tensor(X[rows]))
                loss = ((guess - standard[rows]) ** 2).sum(dim=1).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        encoder.eval()
    if parallel is not None:
        parallel.share_weights([encoder])
