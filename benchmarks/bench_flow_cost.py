"""Decoder evaluations per training and per test image: version 0.1's flows vs today's.

Trains a GradientFlowEncoder with today's defaults on the table-1 protocol (MNIST or
Fashion-MNIST, batches of 5 drawn with replacement) and, at each budget, encodes 100 other
training images with the training flow settings and 100 test images with the transform
settings of both versions, on the same decoder. Prints evaluations per image and the mean
code loss each reaches: the cost side of docs/precision.md.

    python benchmarks/bench_flow_cost.py --dataset mnist --budgets 480 1920 5760
"""

import argparse
import time

import numpy as np
import torch

from gfe_sklearn import GradientFlowEncoder
from gfe_sklearn.datasets import load_fashion_mnist, load_mnist
from gfe_sklearn.flow import encode

LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}

# (training flow, test flow) keyword arguments of gfe_sklearn.flow.encode.
VERSIONS = {
    "0.1": (
        {"tau": 1000.0, "stop_rule": "loss", "stop_tol": 1e-6, "options": {"s_max": 10.0}},
        {"tau": 1000.0, "stop_rule": "loss", "stop_tol": 1e-4, "options": {"s_max": 10.0}},
    ),
    "0.2": (
        {"tau": "auto", "stop_rule": "code", "stop_tol": 1e-3, "options": {"s_max": 1000.0}},
        {"tau": "auto", "stop_rule": "code", "stop_tol": 1e-4, "options": {"s_max": 1000.0}},
    ),
}


def cost(decoder, images, settings, row_chunk):
    start = time.perf_counter()
    res = encode(decoder, images, 20, solver="amd", row_chunk=row_chunk, **settings)
    return (
        float(res.n_evals.double().mean()),
        float(res.loss.double().mean()),
        time.perf_counter() - start,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(LOADERS), default="mnist")
    parser.add_argument("--budgets", type=int, nargs="+", default=[480, 1920, 5760])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = LOADERS[args.dataset]
    X = load(subset="train").data.astype(np.float32)
    X_test = torch.as_tensor(load(subset="test").data[: args.images].astype(np.float32))
    rng = np.random.default_rng(args.seed)
    held = torch.as_tensor(X[rng.choice(len(X), args.images, replace=False)])
    # GFE-amd on the papers' protocol, as the experiments run it.
    gfe = GradientFlowEncoder(
        solver="amd",
        fit_stop_tol=1e-3,
        learning_rate=5e-4,
        batch_size=5,
        device="cpu",
        random_state=args.seed,
    )
    print(
        f"{args.dataset}, seed {args.seed}, torch {torch.__version__}, {args.threads} thread(s),"
        f" float32; {args.images} training images (batches of 5, as in fit) and "
        f"{args.images} test images per row"
    )
    print(
        "| images | flows | train evals/image | train code loss | test evals/image "
        "| test code loss |"
    )
    print("|---:|---|---:|---:|---:|---:|")
    seen = 0
    for budget in args.budgets:
        while seen < budget:
            gfe.partial_fit(X[rng.integers(0, len(X), 5)])
            seen += 5
        for version, (train, test) in VERSIONS.items():
            tr = [cost(gfe.decoder_, held[i : i + 5], train, None) for i in range(0, len(held), 5)]
            te = cost(gfe.decoder_, X_test, test, "auto")
            print(
                f"| {budget:,} | {version} | {np.mean([t[0] for t in tr]):.0f} "
                f"| {np.mean([t[1] for t in tr]):.4f} | {te[0]:.0f} | {te[1]:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
