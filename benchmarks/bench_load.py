"""Fit time with one other CPU-bound process on the machine, against the time without it.

Usage::

    python benchmarks/bench_load.py [--epochs 2] [--repeats 2] [--threads 1 2]

Fits ``GradientFlowEncoder()`` (its defaults, ``max_iter=--epochs``) on scikit-learn's digits
once with the machine as it is and once while a busy loop runs in another process, for each
``n_threads`` given, alternating so that both see the same background. Prints each wall
time and the ratio loaded / quiet per setting, measured in the same run. Run it on an
otherwise idle machine: "quiet" means whatever else runs there.
"""

import argparse
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import MinMaxScaler

import gfe_sklearn
from gfe_sklearn import GradientFlowEncoder


def fit_seconds(X, epochs, n_threads):
    model = GradientFlowEncoder(max_iter=epochs, n_threads=n_threads, random_state=0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    return time.perf_counter() - start


class BusyProcess:
    """One CPU-bound Python process for the duration of a ``with`` block."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # let it reach the scheduler before the timing starts
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, os.cpu_count() or 1],
        help="n_threads values to compare (default: 1 and every CPU)",
    )
    args = parser.parse_args()
    X = MinMaxScaler().fit_transform(load_digits().data)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, gfe-sklearn {gfe_sklearn.__version__}; GradientFlowEncoder() "
        f"on digits ({X.shape[0]} images, float64), {args.epochs} epochs"
    )
    times = {(n, load): [] for n in args.threads for load in ("quiet", "loaded")}
    for _ in range(args.repeats):
        for n in args.threads:
            times[n, "quiet"].append(fit_seconds(X, args.epochs, n))
            with BusyProcess():
                times[n, "loaded"].append(fit_seconds(X, args.epochs, n))
            print(
                f"n_threads={n}: quiet {times[n, 'quiet'][-1]:.2f} s, loaded "
                f"{times[n, 'loaded'][-1]:.2f} s",
                flush=True,
            )
    print(
        f"{'n_threads':>9s} {'quiet s (median)':>17s} {'loaded s (median)':>18s} "
        f"{'loaded / quiet':>15s}"
    )
    for n in args.threads:
        quiet, loaded = np.median(times[n, "quiet"]), np.median(times[n, "loaded"])
        ratios = ", ".join(f"{b / a:.2f}" for a, b in zip(times[n, "quiet"], times[n, "loaded"]))
        print(f"{n:9d} {quiet:17.2f} {loaded:18.2f} {loaded / quiet:15.2f}   (each pair: {ratios})")


if __name__ == "__main__":
    main()
