"""Evaluations per image to reach the gradient flow's endpoint: AMD's flow against L-BFGS.

Usage::

    python benchmarks/bench_endpoint_solvers.py --model gfe.safetensors --images 100
    python benchmarks/bench_endpoint_solvers.py --dataset mnist --train-images 2000

Loads a fitted GradientFlowEncoder saved with ``save`` (``--model``; e.g. a decoder deep
into a long training run, whose flows are the longest), or trains one the papers' way
(batch 5, RMSprop) on ``--train-images`` images. Then encodes ``--images`` training images
that follow the first ``--train-images`` in batches of ``--batch`` (5: the training flows
of the papers' protocol) with each setting below, and prints per image: decoder
evaluations, the mean BCE at the codes, and the codes' distance to the flow's endpoint
(relative to ``max(|z|, 1)``: median and largest), with the ratio of evaluations to the
default training flow. The endpoint is L-BFGS run to ``stop_tol=1e-10``, checked against
AMD's flow at ``tau=1e8``; evaluation counts do not depend on machine load.
Needs the MNIST / Fashion-MNIST files (``GFE_SKLEARN_DATA``).
"""

import argparse
import time

import torch

from gfe_sklearn import GradientFlowEncoder
from gfe_sklearn.datasets import load_fashion_mnist, load_mnist
from gfe_sklearn.flow import encode

LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}
SETTINGS = {
    # name: encode keyword arguments
    "amd, training flow (fit_stop_tol 1e-3)": {"solver": "amd", "stop_tol": 1e-3},
    "amd, transform flow (stop_tol 1e-4)": {"solver": "amd", "stop_tol": 1e-4},
    "amd, tau 1e8 (stop_tol 1e-7)": {"solver": "amd", "tau": 1e8, "stop_tol": 1e-7},
    "lbfgs, stop_tol 1e-3": {"solver": "lbfgs", "stop_tol": 1e-3},
    "lbfgs, stop_tol 1e-4": {"solver": "lbfgs", "stop_tol": 1e-4},
    "lbfgs, stop_tol 1e-6": {"solver": "lbfgs", "stop_tol": 1e-6},
}


def run(decoder, n_components, images, batch, kwargs):
    results, start = [], time.perf_counter()
    for i in range(0, len(images), batch):
        results.append(
            encode(decoder, images[i : i + batch], n_components, row_chunk=None, **kwargs)
        )
    z, loss, evals = (
        torch.cat([getattr(r, name) for r in results]) for name in ("z", "loss", "n_evals")
    )
    return z, loss, evals.double(), time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(LOADERS), default="mnist")
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument(
        "--model",
        help="a fitted GradientFlowEncoder saved with save() "
        "(default: train one on --train-images)",
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    X = LOADERS[args.dataset](subset="train").data
    if args.model:
        est = GradientFlowEncoder.load(args.model)
    else:
        # GFE-amd on the papers' protocol, as the experiments run it.
        est = GradientFlowEncoder(
            solver="amd",
            fit_stop_tol=1e-3,
            learning_rate=5e-4,
            batch_size=5,
            max_iter=1,
            compute_dtype=None,
            random_state=0,
            device="cpu",
        )
        est.fit(X[: args.train_images])
    print(
        f"decoder after {est.n_samples_seen_} training images; {args.images} images of "
        f"{args.dataset}, batches of {args.batch}, {torch.get_num_threads()} thread(s)"
    )
    images = torch.as_tensor(
        X[args.train_images : args.train_images + args.images], dtype=est._model_dtype
    )
    decoder = est.decoder_.eval()
    k = est.n_components
    endpoint, end_loss, _, _ = run(
        decoder, k, images, args.batch, {"solver": "lbfgs", "stop_tol": 1e-10}
    )
    rows, base = [], None
    for name, kwargs in SETTINGS.items():
        z, loss, evals, seconds = run(decoder, k, images, args.batch, kwargs)
        distance = (z - endpoint).norm(dim=1) / endpoint.norm(dim=1).clamp_min(1)
        base = base or float(evals.mean())
        rows.append(
            (
                name,
                float(evals.mean()),
                base / float(evals.mean()),
                float(loss.mean()),
                float(distance.median()),
                float(distance.max()),
                seconds,
            )
        )
    print(f"endpoint (lbfgs, stop_tol 1e-10): mean BCE {float(end_loss.mean()):.6f}")
    print(
        f"{'setting':40s} {'evals/img':>9s} {'x fewer':>7s} {'BCE':>9s} "
        f"{'dist med':>9s} {'dist max':>9s} {'seconds':>8s}"
    )
    for name, evals, ratio, loss, med, worst, seconds in rows:
        print(
            f"{name:40s} {evals:9.1f} {ratio:7.2f} {loss:9.6f} {med:9.2e} {worst:9.2e} "
            f"{seconds:8.1f}"
        )


if __name__ == "__main__":
    main()
