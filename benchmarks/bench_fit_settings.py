"""Training settings on scikit-learn's digits: held-out loss per epoch against CPU time.

Usage::

    python benchmarks/bench_fit_settings.py [--epochs 4] [--dtype float32] \\
        [--settings "batch_size=32,learning_rate=5e-4,fit_stop_tol=1e-3" ...]

Each setting (``GradientFlowEncoder`` parameters over its defaults, comma-separated) trains
one decoder on 75% of the digits (MinMaxScaler, clipped) one epoch per ``partial_fit`` call,
and after each epoch prints the CPU seconds of training so far (``time.process_time``, which
other processes on the machine disturb far less than wall time), the decoder evaluations per
image that the training flows cost at the decoder reached (on 256 training images) and the
held-out BCE (minus ``score`` on the other 25%); neither measurement is timed. One torch
thread. The defaults' rows show what ``fit`` reaches epoch by epoch.
"""

import argparse
import time

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

from gfe_sklearn import GradientFlowEncoder
from gfe_sklearn.flow import encode

DEFAULT_SETTINGS = [
    "",
    "batch_size=32,learning_rate=5e-4,fit_stop_tol=1e-3",
    "batch_size=32,learning_rate=5e-4",
    "batch_size=64,learning_rate=1e-3",
    "batch_size=256,learning_rate=4e-3",
    "fit_stop_tol=1e-3",
]


def parse(text):
    params = {}
    for item in filter(None, text.split(",")):
        name, value = item.split("=")
        params[name] = (
            value
            if name == "solver"
            else float(value)
            if "." in value or "e" in value
            else int(value)
        )
    return params


def training_evaluations(model, X):
    """Decoder evaluations per image of the training flows at the model's current decoder."""
    target = torch.as_tensor(X, dtype=model._model_dtype)
    result = encode(
        model.decoder_.eval(),
        target,
        model.n_components,
        solver=model._solver(),
        stop_tol=model.fit_stop_tol,
        row_chunk=None,
    )
    return float(result.n_evals.double().mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS)
    args = parser.parse_args()
    X = load_digits().data
    X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)
    scaler = MinMaxScaler(clip=True).fit(X_train)
    X_train = scaler.transform(X_train).astype(args.dtype)
    X_test = scaler.transform(X_test).astype(args.dtype)
    print(
        f"digits, {len(X_train)} training / {len(X_test)} held-out images, {args.dtype}, "
        f"torch {torch.__version__}, one thread"
    )
    print(f"{'setting':52s} {'epoch':>5s} {'cpu s':>7s} {'evals/img':>9s} {'held-out BCE':>12s}")
    for text in args.settings:
        model = GradientFlowEncoder(**parse(text), n_threads=1, random_state=0)
        cpu = 0.0
        for epoch in range(1, args.epochs + 1):
            start = time.process_time()
            model.partial_fit(X_train)
            cpu += time.process_time() - start
            evals = training_evaluations(model, X_train[:256])
            print(
                f"{text or '(defaults)':52s} {epoch:5d} {cpu:7.1f} {evals:9.1f} "
                f"{-model.score(X_test):12.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
