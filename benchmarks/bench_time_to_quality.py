"""Wall time until the test loss first drops below a target on MNIST: GFE against the AE.

Usage::

    python benchmarks/bench_time_to_quality.py [--target 0.12] [--limit 900] \\
        [--gfe 128:2e-3 32:5e-4] [--ae 32:1e-3 128:2e-3] [--chunk 2000]

Each model (``GradientFlowEncoder()`` and ``AutoEncoderBaseline()`` with their defaults
except the ``batch:learning_rate`` pairs given) trains on a shuffled stream of the 60,000
MNIST training images, ``--chunk`` images per ``partial_fit`` call; after each call the BCE
of the first 1,000 test images is measured (not counted in the training time). A model
stops at the target or after ``--limit`` seconds of training. Prints, per setting, the
training seconds and images to the target (or the best BCE reached), and the best setting
of each model with the ratio of their times, all from one run. One torch thread each.
"""

import argparse
import platform
import time

import numpy as np
import torch

import gfe_sklearn
from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder
from gfe_sklearn.datasets import load_mnist


def setting(text):
    batch, lr = text.split(":")
    return int(batch), float(lr)


def run(model, X, X_test, args):
    rng = np.random.default_rng(0)
    seconds, images, best = 0.0, 0, np.inf
    while seconds < args.limit:
        order = rng.permutation(len(X))
        for start in range(0, len(X), args.chunk):
            t0 = time.perf_counter()
            model.partial_fit(X[order[start : start + args.chunk]])
            seconds += time.perf_counter() - t0
            images += len(order[start : start + args.chunk])
            best = min(best, -model.score(X_test))
            if best < args.target:
                return seconds, images, best, True
            if seconds >= args.limit:
                break
    return seconds, images, best, False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.12)
    parser.add_argument("--limit", type=float, default=900.0, help="seconds per setting")
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--gfe", type=setting, nargs="*", default=[(128, 2e-3), (32, 5e-4)])
    parser.add_argument("--ae", type=setting, nargs="*", default=[(32, 1e-3), (128, 2e-3)])
    args = parser.parse_args()
    X = load_mnist(subset="train", return_X_y=True)[0].astype(np.float32)
    X_test = load_mnist(subset="test", return_X_y=True)[0][:1000].astype(np.float32)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"gfe-sklearn {gfe_sklearn.__version__}, one thread, float32; target test BCE "
        f"{args.target} on 1,000 MNIST test images, {args.limit:.0f} s limit per setting"
    )
    makers = {"GFE": GradientFlowEncoder, "AE": AutoEncoderBaseline}
    results = {}
    for name, settings in (("GFE", args.gfe), ("AE", args.ae)):
        for batch, lr in settings:
            model = makers[name](batch_size=batch, learning_rate=lr, n_threads=1, random_state=0)
            seconds, images, best, reached = run(model, X, X_test, args)
            results[name, batch, lr] = (seconds, reached)
            status = "reached" if reached else f"not reached (best {best:.4f})"
            print(
                f"{name:3s} batch {batch:4d} lr {lr:g}: {status} after {seconds:7.1f} s, "
                f"{images} images, test BCE {best:.4f}",
                flush=True,
            )
    best = {}
    for (name, batch, lr), (seconds, reached) in results.items():
        if reached and (name not in best or seconds < best[name][0]):
            best[name] = (seconds, batch, lr)
    for name, (seconds, batch, lr) in best.items():
        print(f"best {name}: batch {batch}, lr {lr:g}, {seconds:.1f} s")
    if len(best) == 2:
        print(f"GFE time / AE time: {best['GFE'][0] / best['AE'][0]:.2f} (goal <= 1)")


if __name__ == "__main__":
    main()
