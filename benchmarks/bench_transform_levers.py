"""What makes ``transform`` cheaper, at what held-out loss: the levers of encoding new data.

Usage::

    python benchmarks/bench_transform_levers.py [--dataset mnist] [--n-train 5000] \
        [--n-test 2048] [--max-iter 3] [--distill-epochs 30]

Fits ``GradientFlowEncoder`` and ``AutoEncoderBaseline`` (``max_iter``, ``random_state=0``,
one torch thread) on the first ``--n-train`` training images and encodes the first
``--n-test`` test images every way below, all in one run, timing each once:

- the autoencoder's ``transform`` (one encoder pass): the reference time;
- one gradient step from z(0) = 0 with a backtracking line search, the one-step encoding of
  Gradient Origin Networks (Bond-Taylor and Willcocks, 2021) on this decoder;
- L-BFGS from z(0) = 0 at the 0.8 defaults (``stop_tol=1e-4``) and at looser tolerances;
- L-BFGS from a *warm start*: the guess of an encoder network (the autoencoder's shape)
  distilled on the training codes that ``transform`` gives, standardised per component,
  then refined to the same tolerances, or for a fixed number of steps;
- per-sample Gauss-Newton (Levenberg-Marquardt on the cross-entropy's generalised
  Gauss-Newton matrix, Jacobians by ``torch.func``) from the warm start.

For each it prints images per second, the time as a multiple of the autoencoder's, decoder
evaluations per image (forward and input gradient; Gauss-Newton also computes one Jacobian
per step), the held-out cross-entropy and its difference from the 0.8 default's. The
distilled encoder is a prototype of the lever, trained here after ``fit``; its training time
is printed but not counted in the rows.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder
from gfe_sklearn.flow import LOSSES, encode
from gfe_sklearn.nn import make_encoder


def load(dataset, n_train, n_test):
    if dataset == "digits":
        X = (load_digits().data / 16.0).astype(np.float32)
        return X[:n_train], X[-n_test:]
    from gfe_sklearn import datasets

    loader = {"mnist": datasets.load_mnist, "fashion-mnist": datasets.load_fashion_mnist}
    train = loader[dataset](return_X_y=True)[0][:n_train]
    test = loader[dataset](subset="test", return_X_y=True)[0][:n_test]
    return train, test


def distilled_encoder(gfe, X, epochs, seed=0):
    """An encoder trained to predict ``gfe.transform(X)``, and the time that took."""
    start = time.perf_counter()
    codes = torch.as_tensor(gfe.transform(X))
    images = torch.as_tensor(X)
    mean, scale = codes.mean(0), codes.std(0)
    standard = (codes - mean) / scale
    generator = torch.Generator().manual_seed(seed)
    hidden = gfe._fitted_architecture["hidden_layer_sizes"]
    net = make_encoder(gfe.n_components, hidden, X.shape[1], generator=generator)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator)
        for batch in order.split(128):
            loss = ((net(images[batch]) - standard[batch]) ** 2).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    return (lambda x: net(x) * scale + mean), time.perf_counter() - start


def gauss_newton(decoder, target, z, steps, damping=1e-3):
    """Levenberg-Marquardt on each sample's cross-entropy; returns the codes and the loss."""
    from torch.func import jacfwd, vmap

    bce = LOSSES["bce"]
    jacobian = vmap(jacfwd(lambda code: decoder(code[None])[0]))
    logits = decoder(z)
    loss = bce(logits, target)
    damping = torch.full_like(loss, damping)
    evals = torch.ones_like(loss)
    for _ in range(steps):
        J = jacobian(z)
        p = torch.sigmoid(logits)
        grad = torch.einsum("nfk,nf->nk", J, p - target) / target.shape[1]
        H = torch.einsum("nfk,nf,nfj->nkj", J, p * (1 - p) / target.shape[1], J)
        for _ in range(6):  # raise the damping of samples whose trial step failed
            diag = torch.diag_embed(torch.diagonal(H, dim1=1, dim2=2))
            trial = z - torch.linalg.solve(H + damping[:, None, None] * diag, grad)
            trial_logits = decoder(trial)
            trial_loss = bce(trial_logits, target)
            evals += 1
            better = trial_loss < loss
            z = torch.where(better[:, None], trial, z)
            logits = torch.where(better[:, None], trial_logits, logits)
            loss = torch.where(better, trial_loss, loss)
            damping = torch.where(better, damping / 3, damping * 4)
            if bool(better.all()):
                break
    return loss, evals


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", choices=["digits", "mnist", "fashion-mnist"])
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=2048)
    parser.add_argument("--max-iter", type=int, default=3)
    parser.add_argument("--distill-epochs", type=int, default=30)
    parser.add_argument("--gauss-newton-steps", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train, test = load(args.dataset, args.n_train, args.n_test)
    settings = dict(max_iter=args.max_iter, random_state=0, device="cpu")
    if args.dataset == "digits":
        settings.update(n_components=10, hidden_layer_sizes=(32, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gfe = GradientFlowEncoder(**settings).fit(train)
        ae = AutoEncoderBaseline(**settings).fit(train)
    guess, distill_time = distilled_encoder(gfe, train, args.distill_epochs)
    print(
        f"{args.dataset}: {len(train)} training / {len(test)} test images, max_iter="
        f"{args.max_iter}, one thread; encoder distilled in {distill_time:.1f} s"
    )

    target = torch.as_tensor(test)
    k = gfe.n_components

    def lbfgs(z0=None, stop_tol=1e-4, **options):
        def run():
            start = None if z0 is None else z0()
            return encode(
                gfe.decoder_,
                target,
                k,
                solver="lbfgs",
                z0=start,
                stop_tol=stop_tol,
                options=options,
            )

        return run

    with torch.no_grad():
        warm = lambda: guess(target)  # noqa: E731
        _, ae_time = timed(lambda: ae.transform(test))
        ae_loss = -ae.score(test)
        rows = [("autoencoder transform", ae_time, float("nan"), ae_loss)]
        levers = [
            ("one gradient step from 0 (GON)", lbfgs(max_steps=1)),
            ("L-BFGS from 0, stop_tol=1e-4 (0.8)", lbfgs()),
            ("L-BFGS from 0, stop_tol=1e-2", lbfgs(stop_tol=1e-2)),
            ("L-BFGS from 0, stop_tol=2e-2", lbfgs(stop_tol=2e-2)),
            ("warm start, stop_tol=1e-4", lbfgs(warm)),
            ("warm start, stop_tol=1e-2", lbfgs(warm, stop_tol=1e-2)),
            ("warm start, stop_tol=2e-2", lbfgs(warm, stop_tol=2e-2)),
            ("warm start, 8 steps", lbfgs(warm, max_steps=8)),
        ]
        for name, run in levers:
            result, seconds = timed(run)
            rows.append(
                (
                    name,
                    seconds,
                    result.n_evals.double().mean().item(),
                    result.loss.double().mean().item(),
                )
            )
        if args.gauss_newton_steps:
            (loss, evals), seconds = timed(
                lambda: gauss_newton(gfe.decoder_, target, warm(), args.gauss_newton_steps)
            )
            rows.append(
                (
                    f"warm start, {args.gauss_newton_steps} Gauss-Newton steps",
                    seconds,
                    evals.double().mean().item(),
                    loss.double().mean().item(),
                )
            )

    default_loss = rows[2][3]
    print("| encoding | images/s | time / AE's | evaluations / image | BCE | vs 0.8 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, seconds, evals, loss in rows:
        print(
            f"| {name} | {len(test) / seconds:,.0f} | {seconds / ae_time:.1f} | "
            f"{evals:.1f} | {loss:.4f} | {loss - default_loss:+.4f} |"
        )


if __name__ == "__main__":
    main()
