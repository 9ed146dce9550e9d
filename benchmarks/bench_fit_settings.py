"""Training settings: held-out loss against CPU time, on digits or on MNIST-like data.

Usage::

    python benchmarks/bench_fit_settings.py [--epochs 4] [--dtype float32] \\
        [--settings "batch_size=32,learning_rate=5e-4,fit_stop_tol=1e-3" ...] \\
        [--dataset digits|mnist|fashion-mnist] [--n-train 8000] [--n-test 1000] [--chunk 500]

Each setting (``GradientFlowEncoder`` parameters over its defaults, comma-separated;
``fit_max_steps=None`` for no value) trains one decoder by ``partial_fit`` calls of
``--chunk`` images (default: the whole training set, one epoch per call), the settings side
by side, each chunk in turn, so that other load on the machine hits them alike. After each
chunk it prints the CPU seconds of training so far (``time.process_time``, which other
processes disturb far less than wall time), the decoder evaluations per image that the
training flows cost at the decoder reached (on 256 training images) and the held-out BCE
(minus ``score``); neither measurement is timed. One torch thread.

Digits: 75% to train, 25% held out (MinMaxScaler fitted on the training part, clipped).
MNIST and Fashion-MNIST (``GFE_SKLEARN_DATA``): ``--n-train`` training images in a fixed
shuffled order, the first ``--n-test`` test images. The defaults' rows show what ``fit``
reaches epoch by epoch.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

from gfe_sklearn import GradientFlowEncoder
from gfe_sklearn.datasets import load_fashion_mnist, load_mnist
from gfe_sklearn.flow import SOLVERS, encode

DEFAULT_SETTINGS = [
    "",
    "batch_size=32,learning_rate=5e-4,fit_stop_tol=1e-3",
    "batch_size=32,learning_rate=5e-4",
    "batch_size=64,learning_rate=1e-3",
    "batch_size=256,learning_rate=4e-3",
    "fit_stop_tol=1e-3",
]
LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}


def parse(text):
    params = {}
    for item in filter(None, text.split(",")):
        name, value = item.split("=")
        if value == "None":
            params[name] = None
        elif name == "solver":
            params[name] = value
        else:
            params[name] = float(value) if "." in value or "e" in value else int(value)
    return params


def training_evaluations(model, X):
    """Decoder evaluations per image of the training flows at the model's current decoder."""
    target = torch.as_tensor(X, dtype=model._model_dtype)
    cap = model.fit_max_steps if SOLVERS[model.solver_].goes_to_endpoint else None
    result = encode(
        model.decoder_.eval(),
        target,
        model.n_components,
        solver=model.solver_,
        stop_tol=model.fit_stop_tol,
        options={} if cap is None else {"max_steps": cap},
        row_chunk=None,
    )
    return float(result.n_evals.double().mean())


def load(args):
    if args.dataset == "digits":
        X = load_digits().data
        X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)
        scaler = MinMaxScaler(clip=True).fit(X_train)
        return scaler.transform(X_train), scaler.transform(X_test)
    loader = LOADERS[args.dataset]
    X_train = loader(subset="train", download_if_missing=False, return_X_y=True)[0]
    X_test = loader(subset="test", download_if_missing=False, return_X_y=True)[0]
    order = np.random.default_rng(0).permutation(len(X_train))[: args.n_train]
    return X_train[order], X_test[: args.n_test]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS)
    parser.add_argument("--dataset", default="digits", choices=["digits", *LOADERS])
    parser.add_argument("--n-train", type=int, default=8000, help="MNIST-like data only")
    parser.add_argument("--n-test", type=int, default=1000, help="MNIST-like data only")
    parser.add_argument("--chunk", type=int, help="images per partial_fit (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    X_train, X_test = (part.astype(args.dtype) for part in load(args))
    chunk = args.chunk or len(X_train)
    print(
        f"{args.dataset}, {len(X_train)} training / {len(X_test)} held-out images, "
        f"{args.dtype}, torch {torch.__version__}, one thread, partial_fit of {chunk} images"
    )
    print(
        f"{'setting':52s} {'epoch':>5s} {'images':>7s} {'cpu s':>7s} {'evals/img':>9s} "
        f"{'held-out BCE':>12s}"
    )
    with warnings.catch_warnings():  # one-time costs (lazy imports, kernels) out of the timings
        warnings.simplefilter("ignore")
        GradientFlowEncoder(max_iter=1, random_state=0).fit(X_train[:64])
    models = {text: GradientFlowEncoder(**parse(text), random_state=0) for text in args.settings}
    cpu = dict.fromkeys(args.settings, 0.0)
    seen = 0
    for epoch in range(1, args.epochs + 1):
        for start in range(0, len(X_train), chunk):
            part = X_train[start : start + chunk]
            seen += len(part)
            for text, model in models.items():
                began = time.process_time()
                model.partial_fit(part)
                cpu[text] += time.process_time() - began
                evals = training_evaluations(model, X_train[:256])
                print(
                    f"{text or '(defaults)':52s} {epoch:5d} {seen:7d} {cpu[text]:7.1f} "
                    f"{evals:9.1f} {-model.score(X_test):12.4f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
