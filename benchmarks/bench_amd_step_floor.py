"""Decoder evaluations of AMD with the papers' step floor (s_min = s0) against s_min = 0.

Usage::

    python benchmarks/bench_amd_step_floor.py [--dataset fashion-mnist] [--train-images 2000]
    python benchmarks/bench_amd_step_floor.py --model gfe.joblib --stop-tol 1e-4

Trains GradientFlowEncoder the papers' way (batch 5, RMSprop) on ``--train-images`` images,
or loads a fitted one saved with ``joblib.dump`` (``--model``; e.g. a decoder deep into a
long training run, where the floor costs most), then flows ``--images`` training images
that follow the first ``--train-images`` on that decoder to ``--stop-tol`` with both
floors. Prints evaluations and accepted steps per image and the mean code loss of each, and
their ratios, all from the same run (decoder evaluations do not depend on machine load).
Needs the MNIST / Fashion-MNIST files (``GFE_SKLEARN_DATA``).
"""

import argparse
import time

import joblib
import torch

from gfe_sklearn import GradientFlowEncoder
from gfe_sklearn.datasets import load_fashion_mnist, load_mnist
from gfe_sklearn.flow import encode

LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}


def flow_stats(decoder, n_components, images, args, s_min, batch=5):
    evals = steps = loss = 0.0
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        res = encode(
            decoder,
            images[i : i + batch],
            n_components,
            solver="amd",
            tau=args.tau,
            stop_rule=args.stop_rule,
            stop_tol=args.stop_tol,
            row_chunk=None,
            options={"s_min": s_min, "s_max": args.s_max},
        )
        evals += float(res.n_evals.sum())
        steps += float(res.n_steps.sum())
        loss += float(res.loss.sum())
    n = len(images)
    return {
        "evals": evals / n,
        "steps": steps / n,
        "loss": loss / n,
        "seconds": time.perf_counter() - start,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(LOADERS), default="fashion-mnist")
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--images", type=int, default=100)
    # The defaults are the settings of the figures in docs/engine.md (version 0.1's flows).
    parser.add_argument("--stop-tol", type=float, default=1e-6)
    parser.add_argument("--stop-rule", choices=["code", "loss"], default="loss")
    parser.add_argument("--tau", type=float, default=1000.0)
    parser.add_argument("--s-max", type=float, default=10.0)
    parser.add_argument(
        "--model",
        help="a fitted GradientFlowEncoder saved with joblib.dump "
        "(default: train one on --train-images)",
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    X = LOADERS[args.dataset](subset="train", download_if_missing=False).data
    if args.model:
        gfe = joblib.load(args.model)
        origin = f"decoder loaded from {args.model}"
    else:
        # GFE-amd on the papers' protocol, as the experiments run it.
        gfe = GradientFlowEncoder(
            solver="amd",
            fit_stop_tol=1e-3,
            learning_rate=5e-4,
            batch_size=5,
            device="cpu",
            compute_dtype=None,
            random_state=0,
        )
        start = time.perf_counter()
        gfe.partial_fit(X[: args.train_images])
        origin = (
            f"decoder trained on {args.train_images} images ({time.perf_counter() - start:.0f} s)"
        )
    print(
        f"{args.dataset}: {origin}; flowing {args.images} other images to "
        f"stop_tol={args.stop_tol:g}, batches of 5"
    )
    decoder = gfe.decoder_.eval()
    images = torch.as_tensor(X[args.train_images : args.train_images + args.images])
    floored = flow_stats(decoder, gfe.n_components, images, args, s_min=None)
    free = flow_stats(decoder, gfe.n_components, images, args, s_min=0.0)
    for name, r in (("s_min = s0 = 1 (papers)", floored), ("s_min = 0", free)):
        print(
            f"{name:24s}: {r['evals']:8.1f} evaluations/image, {r['steps']:7.1f} steps/image, "
            f"code loss {r['loss']:.5f}, {r['seconds']:.1f} s"
        )
    print(f"evaluations ratio (s_min=0 / papers): {free['evals'] / floored['evals']:.2f}")
    print(f"code loss ratio   (s_min=0 / papers): {free['loss'] / floored['loss']:.4f}")


if __name__ == "__main__":
    main()
