"""This package beside the authors' public implementation, on the papers' table-1 protocol.

Trains GFE-amd decoders with both implementations on the same stream of MNIST (or
Fashion-MNIST) batches, 5 images drawn with replacement, RMSprop (lr 5e-4, alpha 0.9,
eps 1e-6), decoder 20 -> 150 -> 300 -> 600 -> 784 with ELU, and prints the test BCE per pixel
after each budget: each decoder with its own encoding, and each with the other's encoding
(which separates how a decoder is trained from how test images are encoded). Ours runs
GFE-amd as the experiments do (``OURS``: the package's flow settings with AMD and training
flows to 1e-3); theirs with the settings of their `config/config_<dataset>.ini`.

The authors' code (https://github.com/k-flouris/gfe) is not part of this project: point
`--reference` or `$GFE_REFERENCE_DIR` at a checkout of it. Without one the script says so and
runs ours only. Results are appended to `--out` (JSON lines), so seeds and models can run in
separate processes (one core each); the table is printed from everything in that file.

    python benchmarks/bench_reference.py --reference ~/src/gfe --seeds 0 1 2 --models theirs
    python benchmarks/bench_reference.py --seeds 0 1 2 --models ours
"""

import argparse
import configparser
import contextlib
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import gfe_sklearn
from gfe_sklearn import GradientFlowEncoder
from gfe_sklearn.datasets import load_fashion_mnist, load_mnist
from gfe_sklearn.flow import encode, solver_options

LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}
REFERENCE_CONFIG = {"mnist": "config_mnist.ini", "fashion-mnist": "config_fmnist.ini"}
BATCH = 5


def test_bce(decoder, codes, X):
    """Mean per-pixel cross-entropy of ``X`` reconstructed from ``codes`` (exact, from logits)."""
    with torch.no_grad():
        return float(F.binary_cross_entropy_with_logits(decoder(codes), X).item())


# The papers' protocol (lr 5e-4) and GFE-amd, as `python -m experiments` runs it.
OURS = {"solver": "amd", "fit_stop_tol": 1e-3, "learning_rate": 5e-4}


def our_codes(decoder, X, solver="amd"):
    """``transform``'s encoding (``OURS``'s flow settings with ``solver``) on any decoder."""
    params = GradientFlowEncoder(**{**OURS, "solver": solver}).get_params()
    names = set(solver_options(params["solver"])) & set(params)
    out = encode(
        decoder,
        X,
        20,
        solver=params["solver"],
        flow=params["flow"],
        tau=params["tau"],
        stop_rule=params["stop_rule"],
        stop_tol=params["stop_tol"],
        stop_window=params["stop_window"],
        options={name: params[name] for name in names},
    )
    return out.z, float(out.n_evals.double().mean())


class Reference:
    """The authors' decoder, optimiser and AMD flow, imported from their checkout."""

    def __init__(self, path, dataset, seed):
        path = Path(path)
        for folder in (path, path / "torchdiffeq-master-amd"):
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
        from gflow import GFlow_AMD_approx
        from networks import net_mnist_dec

        config = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
        config.read(path / "config" / REFERENCE_CONFIG[dataset])
        amd, flow, opt = config["AMD"], config["GFLOW"], config["OPTIMIZATION"]
        self.settings = {
            k: v for section in ("GFLOW", "AMD", "OPTIMIZATION") for k, v in config[section].items()
        }
        torch.manual_seed(seed)  # their code draws weights and z(0) from torch's generator
        self.net = net_mnist_dec(20, 784)

        def loss_function(y, x, eps=1e-8):  # their training loss, as in their main.py
            p = torch.sigmoid(y)
            return torch.sum(
                torch.mean(-x * torch.log(p + eps) - (1 - x) * torch.log(1 - p + eps), axis=1)
            )

        def amd_loss_function(y, x, eps=1e-8):
            p = torch.sigmoid(y)
            return torch.mean(-x * torch.log(p + eps) - (1 - x) * torch.log(1 - p + eps), axis=1)

        self.loss = loss_function
        self.gflow = GFlow_AMD_approx(
            self.net,
            20,
            loss_function,
            amd_loss_function,
            tau=float(flow["ODE_TAU"]),
            alpha=float(flow["ODE_ALPHA"]),
            aTOL=float(flow["ODE_ATOL"]),
            rTOL=float(flow["ODE_RTOL"]),
            int_tsteps=int(flow["ODE_TSTEPS"]),
            device="cpu",
            dtstep=float(amd["AMD_DTSTEP"]),
            dtmaxstep=float(amd["AMD_DTMAXSTEP"]),
            dtfactor=float(amd["AMD_DTFACTOR"]),
            dtiter=float(amd["AMD_DTITER"]),
            conv_graddt=float(amd["AMD_CONV_GRADDT"]),
            conv_dtstep=float(amd["AMD_CONV_DTSTEP"]),
            conv_percentagetau=float(amd["AMD_CONV_PERCTAU"]),
            armijosigma=float(amd["AMD_ARMIJO_SIGMA"]),
        )
        self.optimizer = torch.optim.RMSprop(
            self.net.parameters(),
            lr=float(opt["OPT_LR_RATE"]),
            eps=float(opt["OPT_EPSILON"]),
            alpha=float(opt["OPT_ALPHA"]),
        )

    def decoder(self, z):
        return self.net(z)[0]

    def codes(self, x):
        self.gflow.x_data = x
        with contextlib.redirect_stdout(io.StringIO()):  # their solver prints every flow
            return self.gflow.determine_zs(z0="rand").detach()

    def train_step(self, x):
        z = self.codes(x)
        loss = self.loss(self.net(z)[0], x)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def test_codes(self, X):
        return torch.cat([self.codes(X[i : i + BATCH]) for i in range(0, len(X), BATCH)])


def run_seed(model, args, X_train, X_test, seed):
    rng = np.random.default_rng(seed)  # the same draws for both implementations
    Xt = torch.tensor(X_test)
    if model == "theirs":
        ref = Reference(args.reference, args.dataset, seed)
    else:
        est = GradientFlowEncoder(
            **{**OURS, "solver": args.solver}, batch_size=BATCH, device="cpu", random_state=seed
        )
    seen, train_seconds = 0, 0.0
    for budget in args.budgets:
        start = time.perf_counter()
        while seen < budget:
            x = X_train[rng.integers(0, len(X_train), BATCH)]
            if model == "theirs":
                ref.train_step(torch.tensor(x))
            else:
                est.partial_fit(x)
            seen += BATCH
        train_seconds += time.perf_counter() - start
        if model == "theirs":
            decoder = ref.decoder
            own = test_bce(decoder, ref.test_codes(Xt), Xt)
        else:
            decoder = est.decoder_
            own = -est.score(X_test)
        other_codes = our_codes(decoder, Xt, args.solver)[0] if model == "theirs" else None
        if model == "ours" and args.reference and args.cross_encode_ours:
            ours_by_theirs = Reference(args.reference, args.dataset, seed)
            ours_by_theirs.net = _Wrapped(est.decoder_)
            ours_by_theirs.gflow.net = ours_by_theirs.net
            other_codes = ours_by_theirs.test_codes(Xt)
        row = {
            "model": model,
            "seed": seed,
            "images": budget,
            "test_bce": own,
            **({"solver": args.solver} if model == "ours" else {}),
            "train_seconds": round(train_seconds, 1),
            "images_per_second": round(budget / train_seconds, 2),
        }
        if other_codes is not None:
            row["test_bce_other_encoding"] = test_bce(decoder, other_codes, Xt)
        print(json.dumps(row), flush=True)
        # Each budget's row reaches --out as it is measured: a stopped run keeps its budgets.
        yield row


class _Wrapped(torch.nn.Module):
    """Our decoder with the reference's module interface (output, dummy)."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, z):
        return self.decoder(z), torch.zeros_like(z)


def report(records, budgets, solver):
    # Rows of ours written before the --solver option are AMD's.
    records = [r for r in records if r["model"] == "theirs" or r.get("solver", "amd") == solver]

    def cell(model, images, key):
        values = [
            r[key] for r in records if r["model"] == model and r["images"] == images and key in r
        ]
        if not values:
            return "–"
        return f"{np.mean(values):.4f} ± {np.std(values):.4f} ({len(values)})"

    header = (
        f"| images | theirs | ours ({solver}) | their decoder, our encoding "
        "| our decoder, their encoding | train images/s theirs | ours |"
    )
    lines = [header, "|---:|---:|---:|---:|---:|---:|---:|"]
    for b in budgets:
        speed = []
        for m in ("theirs", "ours"):
            rates = [r["images_per_second"] for r in records if (r["model"], r["images"]) == (m, b)]
            speed.append(f"{np.mean(rates):.2f}" if rates else "–")
        lines.append(
            f"| {b:,} | {cell('theirs', b, 'test_bce')} | {cell('ours', b, 'test_bce')} "
            f"| {cell('theirs', b, 'test_bce_other_encoding')} "
            f"| {cell('ours', b, 'test_bce_other_encoding')} "
            f"| {speed[0]} | {speed[1]} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reference",
        default=os.environ.get("GFE_REFERENCE_DIR"),
        help="checkout of github.com/k-flouris/gfe (default: $GFE_REFERENCE_DIR)",
    )
    parser.add_argument("--dataset", choices=sorted(LOADERS), default="mnist")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=int, nargs="+", default=[480, 1920, 5760])
    parser.add_argument("--n-test", type=int, default=1000, help="the first N test images")
    parser.add_argument(
        "--models", nargs="+", choices=["ours", "theirs"], default=["ours", "theirs"]
    )
    parser.add_argument(
        "--cross-encode-ours",
        action="store_true",
        help="also encode the test images of our decoders with the authors' "
        "flow (slow: their flow runs to t = 1e4 in steps of at most 10)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--solver",
        choices=["amd", "lbfgs"],
        default="amd",
        help="our solver for training and test codes (default: amd, as the "
        "experiments' GFE-amd; the report shows this solver's rows)",
    )
    parser.add_argument("--out", default="bench_reference.jsonl")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.reference and not (Path(args.reference) / "gflow.py").is_file():
        parser.error(
            f"--reference {args.reference!r} holds no gflow.py: give the folder of a "
            "checkout of https://github.com/k-flouris/gfe."
        )
    models = list(args.models)
    if "theirs" in models and not args.reference:
        print(
            "The authors' code is absent: set --reference or $GFE_REFERENCE_DIR to a checkout "
            "of https://github.com/k-flouris/gfe to run it. Running ours only."
        )
        models.remove("theirs")
    out = Path(args.out)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({args.threads} thread(s)), gfe_sklearn "
        f"{gfe_sklearn.__version__}, float32, {args.dataset}, first {args.n_test} test images"
    )
    if not args.report_only:
        data = LOADERS[args.dataset]
        X_train = data(subset="train", data_home=args.data_home).data.astype(np.float32)
        X_test = data(subset="test", data_home=args.data_home).data[: args.n_test]
        X_test = X_test.astype(np.float32)
        for seed in args.seeds:
            for model in models:
                for row in run_seed(model, args, X_train, X_test, seed):
                    row["dataset"] = args.dataset
                    with out.open("a") as f:
                        f.write(json.dumps(row) + "\n")
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    records = [r for r in records if r.get("dataset") == args.dataset]
    print(report(records, args.budgets, args.solver))


if __name__ == "__main__":
    main()
