"""``solvers``: fixed-grid RK4, the Nesterov flow and AMD; approximate vs full adjoint."""

import numpy as np
import torch

from gfe_sklearn.flow import encode, horizon, solver_options

from ._common import (
    fmt,
    fmt_seconds,
    markdown_table,
    mean_std,
    require_at_least_one,
    sampler_rng,
    save_figure,
)
from ._models import make_model
from ._training import DrawStream, holdout, load_dataset, scored_fields
from ._units import Unit, run_checkpointed_unit

NAME = "solvers"
TITLE = "Solvers and gradient modes (fig. 2 of [1], fig. 3 of [2])"
SUMMARY = "fig. 2/3: RK4, Nesterov and AMD flows, approx vs full adjoint: BCE and cost"
DESCRIPTION = """\
Fig. 2 of [1] / fig. 3 of [2]: GFE decoders trained with different encoders of the flow,
from the same initial decoder and on the same minibatches (5 images drawn with
replacement): fixed-grid RK4 on a logarithmic grid with alpha(t) = exp(-2t/tau) (the
papers' appendix A.2), the same with the Nesterov second-order flow, and AMD; each with
the approximate adjoint and optionally the full one. Validation BCE (held-out training
images, encoded by each model's own flow) against training iterations, and what each
costs: seconds per training iteration and decoder evaluations per encoded image. The
flow-convergence figure (fig. 1 of [2]) shows the loss along the flow of a fixed batch
of validation images at the first, middle and last evaluation."""
N_TEST_HELP = "validation images, held out of the training set"

FIXED = {"alpha": "exp", "stop_tol": 0.0, "fit_stop_tol": 0.0}  # fixed grids run to tau
VARIANTS = {
    "rk4": ("GFE (RK4)", {"solver": "rk4", **FIXED}),
    "rk4-full": ("GFE (RK4, full adjoint)", {"solver": "rk4", "adjoint": "full", **FIXED}),
    "nesterov": ("2nd-order GFE (RK4)", {"solver": "rk4", "flow": "nesterov", **FIXED}),
    "nesterov-full": (
        "2nd-order GFE (RK4, full adjoint)",
        {"solver": "rk4", "flow": "nesterov", "adjoint": "full", **FIXED},
    ),
    "amd": ("GFE-amd", {"solver": "amd"}),
    "amd-full": ("GFE-amd (full adjoint)", {"solver": "amd", "adjoint": "full"}),
    "euler": ("GFE (Euler)", {"solver": "euler", **FIXED}),
    "dopri5": ("GFE (dopri5)", {"solver": "dopri5", "alpha": "exp"}),
}

DEFAULTS = {
    "dataset": ["mnist"],
    "seeds": ["1"],
    "n_test": 500,
    "variants": ["rk4", "rk4-full", "nesterov", "amd"],
    "iterations": 300,
    "eval_every": 25,
    "n_steps": 100,
    "n_flow": 16,
}
SMOKE = {"n_test": 20, "iterations": 4, "eval_every": 2, "n_steps": 4, "n_flow": 4}
SELECTORS = {"variants"}
N_FLOW_POINTS = 40


def add_arguments(parser):
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        metavar="V",
        help=f"flows to compare, of {', '.join(VARIANTS)} (default: rk4 rk4-full nesterov amd)",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        metavar="N",
        help="training iterations (minibatches) (default: 300; --smoke: 4)",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        metavar="N",
        help="iterations between validations (default: 25; --smoke: 2)",
    )
    parser.add_argument(
        "--n-steps",
        type=int,
        metavar="N",
        help="steps of the fixed-grid solvers (default: 100, the papers' N; --smoke: 4)",
    )
    parser.add_argument(
        "--n-flow",
        type=int,
        metavar="N",
        help="validation images whose flow is recorded for the cost and "
        "convergence figures (default: 16; --smoke: 4)",
    )


def check_options(args):
    require_at_least_one(args, "iterations", "eval_every", "n_steps", "n_flow")
    args.variants = list(dict.fromkeys(args.variants))


def _checkpoints(args):
    iterations = list(range(args.eval_every, args.iterations + 1, args.eval_every))
    if not iterations or iterations[-1] != args.iterations:
        iterations.append(args.iterations)
    return iterations


def flow_settings(model):
    """``gfe_sklearn.flow.encode`` keywords that reproduce a fitted GFE's own encoding."""
    params = model.get_params()
    options = {name: params[name] for name in solver_options(params["solver"]) if name in params}
    return dict(
        solver=params["solver"],
        flow=params["flow"],
        adjoint="approx",
        loss=model.loss_,  # the fitted model's: 'auto' resolved at its fit
        tau=horizon(params["solver"], params["tau"]),
        alpha=params["alpha"],
        stop_rule=params["stop_rule"],
        stop_tol=params["stop_tol"],
        stop_window=params["stop_window"],
        nesterov_eps=params["nesterov_eps"],
        options=options,
    )


def flow_diagnostics(model, X):
    """Decoder evaluations per image and the mean loss along the flow, for the images ``X``."""
    from gfe_sklearn.plotting import flow_loss_curve

    settings = flow_settings(model)
    target = torch.as_tensor(np.asarray(X), device=model.device_)
    result = encode(model.decoder_, target, model.n_components, record_history=True, **settings)
    t = np.concatenate(
        [[0.0], np.geomspace(settings["tau"] * 1e-3, settings["tau"], N_FLOW_POINTS - 1)]
    )
    _, loss = flow_loss_curve(result, t=t)
    return {
        "evals_per_image": float(result.n_evals.double().mean()),
        "steps_per_image": float(result.n_steps.double().mean()),
        "flow_t": t.round(6).tolist(),
        "flow_loss": loss.round(6).tolist(),
    }


def units(ctx):
    args = ctx.args
    for dataset in args.dataset:
        data = load_dataset(dataset, data_home=args.data_home, n_train=args.n_train)
        X_train, _, X_val, _ = holdout(data.X_train, data.y_train, args.n_test)
        for seed in args.seeds:
            for variant in args.variants:
                name = f"{variant}-{dataset}-seed{seed}"
                label = f"{VARIANTS[variant][0]} seed {seed} {dataset}"
                yield Unit(name, label, _run_unit, (dataset, X_train, X_val, seed, variant))


def _run_unit(ctx, name, label, dataset, X_train, X_val, seed, variant):
    args = ctx.args
    checkpoints = [i * args.batch_size for i in _checkpoints(args)]

    def due(images):
        # The iteration is part of the key only to keep the records' field order.
        iteration = images // args.batch_size
        key = {"dataset": dataset, "seed": seed, "variant": variant}
        return [{**key, "iteration": iteration, "images": images}]

    def measure(model, state, key):
        fields, value = scored_fields(model, X_val, "val", state)
        diagnostics = flow_diagnostics(model, X_val[: args.n_flow])
        fields.update(diagnostics)
        message = (
            f"  {label} iteration {key['iteration']}: validation "
            f"BCE {value:.4f}, {diagnostics['evals_per_image']:.0f} decoder "
            f"evaluations per image ({state['seconds']:.1f} s training)"
        )
        return fields, message

    def make():
        return make_model("gfe", args, seed, n_steps=args.n_steps, **VARIANTS[variant][1])

    return run_checkpointed_unit(
        ctx,
        due=due,
        measure=measure,
        checkpoints=checkpoints,
        name=name,
        label=label,
        make=make,
        X=X_train,
        stream=DrawStream(len(X_train), sampler_rng(seed, 0)),
    )


def _series(records, dataset, variant, seeds):
    """Per iteration, the mean over seeds of each numeric field."""
    found = [
        r
        for r in records
        if r["dataset"] == dataset and r["variant"] == variant and r["seed"] in seeds
    ]
    iterations = sorted({r["iteration"] for r in found})
    out = {"iteration": iterations}
    for field in ("val_bce", "train_seconds", "evals_per_image"):
        out[field] = [
            mean_std([r[field] for r in found if r["iteration"] == i])[0] for i in iterations
        ]
    # The first seed's flow, whatever order the records were taken in (--n-jobs).
    out["flow"] = {
        i: next(r for s in seeds for r in found if r["seed"] == s and r["iteration"] == i)
        for i in iterations
    }
    return out


def report(ctx):
    from gfe_sklearn.plotting import plot_curves, subplots

    args, records = ctx.args, ctx.store.records
    summary, parts = {}, []
    for dataset in args.dataset:
        series = {v: _series(records, dataset, v, args.seeds) for v in args.variants}
        series = {v: s for v, s in series.items() if s["iteration"]}
        if not series:
            continue
        rows = []
        for variant, s in series.items():
            per_iteration = s["train_seconds"][-1] / s["iteration"][-1]
            twin = variant.removesuffix("-full")
            ratio = "–"
            if twin != variant and twin in series:
                base = series[twin]["train_seconds"][-1] / series[twin]["iteration"][-1]
                ratio = f"{per_iteration / base:.1f}×"
            evals = float(np.mean(s["evals_per_image"]))
            summary.setdefault(dataset, {})[variant] = {
                "final_val_bce": s["val_bce"][-1],
                "iterations": s["iteration"][-1],
                "seconds_per_iteration": per_iteration,
                "evals_per_image": evals,
                "best_val_bce": float(np.nanmin(s["val_bce"])),
            }
            rows.append(
                [
                    VARIANTS[variant][0],
                    s["iteration"][-1],
                    fmt(s["val_bce"][-1]),
                    fmt(float(np.nanmin(s["val_bce"]))),
                    f"{evals:.0f}",
                    fmt_seconds(per_iteration),
                    ratio,
                    fmt_seconds(s["train_seconds"][-1]),
                ]
            )

        titles = {v: VARIANTS[v][0] for v in series}
        adjoint = {
            titles[v]: (s["iteration"], s["val_bce"])
            for v, s in series.items()
            if v.endswith("-full") or f"{v}-full" in series
        }
        flows = {
            titles[v]: (s["iteration"], s["val_bce"])
            for v, s in series.items()
            if not v.endswith("-full")
        }
        panels = [
            (t, c)
            for t, c in (
                ("approximate vs full adjoint", adjoint),
                ("gradient flows and solvers", flows),
            )
            if c
        ]
        figure, axes = subplots(1, len(panels))
        for ax, (title, curves) in zip(axes[0], panels, strict=True):
            plot_curves(
                curves,
                ax=ax,
                xlabel="training iterations",
                ylabel="validation mean cross-entropy",
                title=f"{dataset}: {title}",
            )
        save_figure(figure, ctx.store.path(f"{NAME}-{dataset}.png"))

        n_cols = min(3, len(series))
        figure, axes = subplots(-(-len(series) // n_cols), n_cols, sharey=True)
        for ax in axes.flat[len(series) :]:
            ax.set_axis_off()
        for ax, (variant, s) in zip(axes.flat, series.items(), strict=False):
            its = s["iteration"]
            picked = sorted({its[0], its[len(its) // 2], its[-1]})
            curves = {
                f"iteration {i}": (
                    np.asarray(s["flow"][i]["flow_t"])[1:],
                    np.asarray(s["flow"][i]["flow_loss"])[1:],
                )
                for i in picked
            }
            plot_curves(
                curves,
                ax=ax,
                xlabel="flow time t",
                ylabel="mean loss along the flow",
                logx=True,
                marker="",
                title=titles[variant],
            )
        save_figure(figure, ctx.store.path(f"{NAME}-{dataset}-flow.png"))

        parts += [
            f"## {dataset}",
            "",
            f"Validation BCE on {ctx.store.find(dataset=dataset)['n_val']:,} held-out "
            f"training images, mean over {len(args.seeds)} seed(s). Decoder "
            "evaluations: per image encoded by the model's flow (one forward pass with its "
            "input gradient each; the full adjoint also recomputes every step in the "
            "backward pass, which shows in the seconds). Time: training only.",
            "",
            markdown_table(
                [
                    "flow",
                    "iterations",
                    "final val BCE",
                    "best val BCE",
                    "decoder evals / image",
                    "s / iteration",
                    "vs approx",
                    "train time",
                ],
                rows,
            ),
            "",
            f"![validation BCE against training iterations]({NAME}-{dataset}.png)",
            "",
            f"![loss along the flow]({NAME}-{dataset}-flow.png)",
            "",
        ]
    return {"table": summary}, "\n".join(parts) or "No finished units yet."
