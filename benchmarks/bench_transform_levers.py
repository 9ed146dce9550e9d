"""What makes ``transform`` cheaper, at what held-out loss: the levers of encoding new data.

Usage::

    python benchmarks/bench_transform_levers.py [--dataset mnist] [--n-train 5000] \
        [--n-test 2048] [--max-iter 3] [--code-prior 0.1] [--repeats 3]

Fits ``GradientFlowEncoder`` (with ``code_init='encoder'``, and again with
``'zeros'`` for the fit time it saves) and ``AutoEncoderBaseline`` (``max_iter``,
``random_state=0``, one torch thread; the encoders with ``--code-prior``, 0 unless given) on
the first ``--n-train`` training images, then
encodes the first ``--n-test`` test images every way below, all in one run, timing each
``transform`` as the fastest of ``--repeats`` calls:

- the autoencoder's ``transform`` (one encoder pass): the reference time;
- one gradient step from z(0) = 0 with a backtracking line search, the one-step encoding of
  Gradient Origin Networks (Bond-Taylor and Willcocks, 2021) on this decoder;
- L-BFGS from z(0) = 0 (``code_init='zeros'``) at 0.8's ``stop_tol=1e-4`` and looser;
- L-BFGS from the guess of the encoder that ``fit`` distilled (``code_init='encoder'``) at
  the same tolerances, or for a fixed number of steps (``max_steps``; once with a first
  step of length 0.3, ``solver_options={'first_step': 0.3}``), or at a loose tolerance
  with a cap on the steps;
- ``code_init='auto'``, the default since 0.10: the distilled guess refined in the
  coordinates of the training codes' mean Hessian (``code_metric_``), each image until a
  step after its first lowers its loss by less than ``fit`` measured on rows held out of
  the distillation (``refine_min_decrease_``), or at the cap on decoder evaluations
  measured there (``refine_max_evals_``); as first built, without those coordinates, for
  at most 10 steps.

The rows from the encoder search in those coordinates too, except the two marked "plain".

For each it prints images per second, the time as a multiple of the autoencoder's, decoder
evaluations per image (a forward pass and input gradient; from ``flow_diagnostics``), the
held-out cross-entropy (the reconstruction alone, without the prior's term) and its
difference from the zero start's at 0.8's tolerance.
"""

import argparse
import math
import time
import warnings
from functools import partial

import numpy as np
import torch
from sklearn.datasets import load_digits

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder
from gfe_sklearn.flow import encode


def load(dataset, n_train, n_test):
    if dataset == "digits":
        X = (load_digits().data / 16.0).astype(np.float32)
        return X[:n_train], X[-n_test:]
    from gfe_sklearn import datasets

    loader = {"mnist": datasets.load_mnist, "fashion-mnist": datasets.load_fashion_mnist}
    train = loader[dataset](return_X_y=True)[0][:n_train]
    test = loader[dataset](subset="test", return_X_y=True)[0][:n_test]
    return train, test


def timed(fn, repeats=1):
    """``fn()``'s result and its fastest time over ``repeats`` calls: a first call pays for
    warming up (docs/performance.md)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", choices=["digits", "mnist", "fashion-mnist"])
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=2048)
    parser.add_argument("--max-iter", type=int, default=3)
    parser.add_argument(
        "--repeats", type=int, default=3, help="time each transform this often, keep the fastest"
    )
    parser.add_argument(
        "--code-prior",
        type=float,
        default=0.0,
        help="GradientFlowEncoder's code_prior, in training and every encoding (default: 0)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train, test = load(args.dataset, args.n_train, args.n_test)
    settings = dict(max_iter=args.max_iter, random_state=0, device="cpu")
    if args.dataset == "digits":
        settings.update(n_components=10, hidden_layer_sizes=(32, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gfe, fit_time = timed(
            lambda: GradientFlowEncoder(
                **settings, code_init="encoder", code_prior=args.code_prior
            ).fit(train)
        )
        _, zeros_fit_time = timed(
            lambda: GradientFlowEncoder(
                **settings, code_init="zeros", code_prior=args.code_prior
            ).fit(train)
        )
        ae, ae_fit_time = timed(lambda: AutoEncoderBaseline(**settings).fit(train))
    print(
        f"{args.dataset}: {len(train)} training / {len(test)} test images, max_iter="
        f"{args.max_iter}, code_prior={args.code_prior:g}, one thread; fit {fit_time:.1f} s "
        f"(code_init='zeros': "
        f"{zeros_fit_time:.1f} s, autoencoder {ae_fit_time:.1f} s)"
    )

    _, ae_time = timed(lambda: ae.transform(test), args.repeats)
    rows = [("autoencoder transform", ae_time, float("nan"), -ae.score(test))]
    with torch.no_grad():
        target = torch.as_tensor(test)
        one_step = partial(encode, gfe.decoder_, target, gfe.n_components, solver="lbfgs")
        result, seconds = timed(lambda: one_step(options={"max_steps": 1}), args.repeats)
    rows.append(("one gradient step from 0 (GON)", seconds, *_evals_and_loss(result, test)))
    levers = [
        ("from 0, stop_tol=1e-4 (0.8)", "zeros", 1e-4, 1000, None),
        ("from 0, stop_tol=1e-3", "zeros", 1e-3, 1000, None),
        ("from 0, stop_tol=1e-2", "zeros", 1e-2, 1000, None),
        ("from 0, stop_tol=2e-2", "zeros", 2e-2, 1000, None),
        ("from the encoder, stop_tol=1e-4", "encoder", 1e-4, 1000, None),
        ("from the encoder, stop_tol=1e-3", "encoder", 1e-3, 1000, None),
        ("from the encoder, stop_tol=1e-2", "encoder", 1e-2, 1000, None),
        ("from the encoder, stop_tol=2e-2", "encoder", 2e-2, 1000, None),
        ("from the encoder, 4 steps", "encoder", 1e-4, 4, None),
        # A guess near its endpoint overshoots L-BFGS's default first step of length 1.
        ("from the encoder, 6 steps, first step 0.3", "encoder", 1e-4, 6, {"first_step": 0.3}),
        ("from the encoder, 6 steps", "encoder", 1e-4, 6, None),
        ("from the encoder, 8 steps (the metric's first cap)", "encoder", 1e-4, 8, None),
        # Easy samples stop at the looser tolerance, the rest at the cap.
        ("from the encoder, stop_tol=3e-2, at most 8 steps", "encoder", 3e-2, 8, None),
        ("from the encoder, 16 steps", "encoder", 1e-4, 16, None),
        # Without the metric: 0.10's default as first built, and its 8 steps.
        ("plain, 8 steps", "plain", 1e-4, 8, None),
        ("plain, 10 steps (the first 'auto')", "plain", 1e-4, 10, None),
        # 0.10's default: the distilled guess, refined until a step gains less than fit measured.
        (
            f"code_init='auto' (0.10's default, min_decrease={gfe.refine_min_decrease_:.2g})",
            "auto",
            1e-4,
            1000,
            None,
        ),
    ]
    metric = gfe.code_metric_
    for name, code_init, stop_tol, max_steps, solver_options in levers:
        gfe.code_metric_ = None if code_init == "plain" else metric
        gfe.set_params(
            code_init="encoder" if code_init == "plain" else code_init,
            stop_tol=stop_tol,
            max_steps=max_steps,
            solver_options=solver_options,
        )
        _, seconds = timed(lambda: gfe.transform(test), args.repeats)
        # The same codes again, for what transform does not report (untimed).
        result = gfe.flow_diagnostics(test)
        rows.append((name, seconds, *_evals_and_loss(result, test, gfe._prior_strength())))
    gfe.code_metric_ = metric

    zero_start = rows[2][3]
    print("| encoding | images/s | time / AE's | evaluations / image | BCE | vs 0.8 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, seconds, evals, loss in rows:
        print(
            f"| {name} | {len(test) / seconds:,.0f} | {seconds / ae_time:.1f} | "
            f"{evals:.1f} | {loss:.4f} | {loss - zero_start:+.4f} |"
        )


def _evals_and_loss(result, test, weight=0.0):
    """Mean evaluations and reconstruction loss per image: the flow's loss less the prior's
    term (``weight * ||z||^2 / 2`` per observed entry, ``weight`` the model's
    ``_prior_strength()``: ``code_prior`` over the prior's variance; the test images have
    no NaN)."""
    prior = weight * (result.z.double() ** 2).sum(dim=1) / 2 / test[0].size
    loss = result.loss.double() - prior
    return result.n_evals.double().mean().item(), loss.mean().item()


if __name__ == "__main__":
    main()
