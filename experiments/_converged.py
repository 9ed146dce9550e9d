"""``converged``: test cross-entropy of fully trained models on three datasets (table 2)."""

import copy

from ._common import (
    fmt,
    fmt_mean_std,
    fmt_seconds,
    markdown_table,
    mean_std,
    require_at_least_one,
    sampler_rng,
    save_figure,
)
from ._models import KINDS, TRAINED, make_model, titles
from ._training import DATASETS, EpochStream, bce, holdout, load_dataset, subset
from ._units import Unit, record_once, run_unit

NAME = "converged"
TITLE = "Converged models (table 2)"
SUMMARY = "table 2: test BCE of GFE-amd after 1 epoch and AE after up to 12, three datasets"
DESCRIPTION = """\
Table 2 of the papers: test-set mean cross-entropy (BCE) of fully trained models on MNIST,
segmented MNIST (trained on the digits 0-4, tested on the unseen digits 5-9) and
Fashion-MNIST. GFE-amd trains one epoch, the AE up to twelve; both train in epochs
(each image once per epoch, minibatches of 5) on the training set less a fixed validation
split, stop early when the validation BCE has not improved for --patience epochs, and are
tested with the parameters of their best validation epoch. Images seen and training time
are those up to that epoch."""
N_TEST_HELP = "test images evaluated: a fixed random subset of the test set"

MODELS = tuple(kind for kind in KINDS if kind in TRAINED)
DEFAULTS = {
    "dataset": ["mnist", "segmented-mnist", "fashion-mnist"],
    "seeds": ["1"],
    "models": list(MODELS),
    "gfe_epochs": 1,
    "ae_epochs": 12,
    "patience": 2,
    "n_val": 5000,
}
SMOKE = {"ae_epochs": 2, "patience": 1, "n_val": 40}
SELECTORS = {"models"}

# Reference values, not results: table 2 of [2] (Flouris et al.), full test sets.
PAPER_TABLE_2 = {
    "mnist": {"ae": 0.0843, "gfe": 0.0830},
    "segmented-mnist": {"ae": 0.1205, "gfe": 0.1135},
    "fashion-mnist": {"ae": 0.2752, "gfe": 0.2764},
}


def add_arguments(parser):
    parser.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        metavar="M",
        help="models to train, of ae, gfe; a folder may hold both, run in turn (default: ae gfe)",
    )
    parser.add_argument(
        "--gfe-epochs", type=int, metavar="N", help="most epochs of GFE-amd (default: 1)"
    )
    parser.add_argument(
        "--ae-epochs", type=int, metavar="N", help="most epochs of the AE (default: 12; --smoke: 2)"
    )
    parser.add_argument(
        "--patience",
        type=int,
        metavar="N",
        help="stop after N epochs without a better validation BCE (default: 2; --smoke: 1)",
    )
    parser.add_argument(
        "--n-val",
        type=int,
        metavar="N",
        help="validation images held out of the training set (default: 5000; --smoke: 40)",
    )


def check_options(args):
    require_at_least_one(args, "gfe_epochs", "ae_epochs", "patience", "n_val")
    args.models = [m for m in MODELS if m in args.models]


def units(ctx):
    args = ctx.args
    for dataset in args.dataset:
        data = load_dataset(dataset, data_home=args.data_home, n_train=args.n_train)
        X_train, _, X_val, _ = holdout(data.X_train, data.y_train, args.n_val)
        X_test, _ = subset(data.X_test, data.y_test, args.n_test)
        for seed in args.seeds:
            for kind in (kind for kind in TRAINED if kind in args.models):
                name = f"{kind}-{dataset}-seed{seed}"
                label = f"{KINDS[kind].title_in(args)} seed {seed} {data.name}"
                yield Unit(name, label, _run_unit, (data.name, X_train, X_val, X_test, seed, kind))


def _run_unit(ctx, name, label, dataset, X_train, X_val, X_test, seed, kind):
    args = ctx.args
    key = {"dataset": dataset, "seed": seed, "model": kind}
    epochs = getattr(args, f"{kind}_epochs")  # --gfe-epochs, --ae-epochs
    n = len(X_train)

    def on_checkpoint(model, state):
        extra = state["extra"]
        epoch = state["seen"] // n
        # Measured even when a resumed run has the epoch's record: early stopping needs it.
        value, seconds = bce(model, X_val)
        ctx.guard.check()
        fields = {
            "images": state["seen"],
            "val_bce": value,
            "n_val": len(X_val),
            "train_seconds": state["seconds"],
            "eval_seconds": seconds,
        }
        record_once(ctx, {**key, "kind": "epoch", "epoch": epoch}, lambda: (fields, None))
        if value < extra.get("best_val", float("inf")):
            extra.update(
                best_val=value,
                best=copy.deepcopy(model),
                best_epoch=epoch,
                best_seen=state["seen"],
                best_seconds=state["seconds"],
                bad=0,
            )
        else:
            extra["bad"] = extra.get("bad", 0) + 1
        ctx.reporter.log(
            f"  {label} epoch {epoch}: validation BCE {value:.4f} "
            f"({state['seconds']:.1f} s training)"
        )
        return extra["bad"] >= args.patience

    def finish(model, state):
        extra = state["extra"]
        if "best" not in extra:  # no finite validation BCE: test the last model
            extra.update(
                best=model,
                best_epoch=state["seen"] // n,
                best_seen=state["seen"],
                best_seconds=state["seconds"],
            )

        def measure():
            value, seconds = bce(extra["best"], X_test)
            fields = {
                "test_bce": value,
                "n_test": len(X_test),
                "images": extra["best_seen"],
                "epochs": extra["best_epoch"],
                "epochs_trained": state["seen"] // n,
                "train_seconds": extra["best_seconds"],
                "total_train_seconds": state["seconds"],
                "eval_seconds": seconds,
                "device": extra["best"].device_,
            }
            return fields, f"  {label}: test BCE {value:.4f} after {extra['best_seen']} images"

        record_once(ctx, {**key, "kind": "final"}, measure)

    return run_unit(
        ctx,
        name=name,
        label=label,
        finished=ctx.store.has(**key, kind="final"),
        make=lambda: make_model(kind, args, seed),
        X=X_train,
        stream=EpochStream(n, sampler_rng(seed, 1)),
        checkpoints=[n * e for e in range(1, epochs + 1)],
        on_checkpoint=on_checkpoint,
        finish=finish,
    )


def summarize(records, args):
    summary = {}
    for dataset in args.dataset:
        for model in args.models:
            found = [
                r
                for r in records
                if r.get("kind") == "final"
                and r["model"] == model
                and r["dataset"] == dataset
                and r["seed"] in args.seeds
            ]
            if not found:
                continue
            entry = {"n": len(found), "n_test": found[0]["n_test"]}
            for field in ("test_bce", "images", "epochs", "train_seconds"):
                entry[field], entry[f"{field}_std"] = mean_std([r[field] for r in found])
            summary.setdefault(dataset, {})[model] = entry
    return summary


def report(ctx):
    from gfe_sklearn.plotting import plot_bars, plot_curves, subplots

    args, records = ctx.args, ctx.store.records
    summary = summarize(records, args)
    header = [
        "dataset",
        "model",
        "test BCE",
        "images seen",
        "epochs",
        "train time",
        "test BCE (paper)",
        "test images",
        "seeds",
    ]
    rows = []
    for dataset, by_model in summary.items():
        for model, e in by_model.items():
            rows.append(
                [
                    DATASETS[dataset][0],
                    titles(args)[model],
                    fmt_mean_std(e["test_bce"], e["test_bce_std"]),
                    f"{e['images']:,.0f}",
                    f"{e['epochs']:.3g}",
                    fmt_seconds(e["train_seconds"]),
                    fmt(PAPER_TABLE_2.get(dataset, {}).get(model)),
                    f"{e['n_test']:,}",
                    e["n"],
                ]
            )
    if not rows:
        return {"table": summary}, "No finished units yet."

    title = titles(args)
    values = {
        title[m]: {DATASETS[d][0]: s[m]["test_bce"] for d, s in summary.items() if m in s}
        for m in args.models
    }
    errors = {
        title[m]: {DATASETS[d][0]: s[m]["test_bce_std"] for d, s in summary.items() if m in s}
        for m in args.models
    }
    reference = {
        title[m]: {DATASETS[d][0]: PAPER_TABLE_2[d][m] for d in summary if d in PAPER_TABLE_2}
        for m in args.models
    }
    ax = plot_bars(
        values,
        errors=errors,
        reference=reference,
        ylabel="test mean cross-entropy",
        title="Converged models: test BCE",
    )
    save_figure(ax, ctx.store.path(f"{NAME}.png"))

    figure, axes = subplots(1, len(summary))
    for ax, dataset in zip(axes[0], summary, strict=True):
        curves = {}
        for model in args.models:
            epochs = sorted(
                (
                    r
                    for r in records
                    if r.get("kind") == "epoch"
                    and r["dataset"] == dataset
                    and r["model"] == model
                    and r["seed"] == args.seeds[0]
                ),
                key=lambda r: r["epoch"],
            )
            if epochs:
                curves[title[model]] = (
                    [r["images"] for r in epochs],
                    [r["val_bce"] for r in epochs],
                )
        plot_curves(
            curves,
            ax=ax,
            xlabel="training images seen",
            ylabel="validation mean cross-entropy",
            title=DATASETS[dataset][0],
        )
    save_figure(figure, ctx.store.path(f"{NAME}-validation.png"))

    body = "\n".join(
        [
            "Test BCE mean ± std over seeds; images seen, epochs and training time (models "
            "only, no evaluation) up to the epoch with the best validation BCE, averaged over "
            "seeds. Paper column: table 2 of the papers (full test sets), for reference.",
            "",
            markdown_table(header, rows, align="llrrrrrrr"),
            "",
            f"![test BCE of converged models]({NAME}.png)",
            "",
            f"Validation BCE after each epoch (seed {args.seeds[0]}):",
            "",
            f"![validation BCE per epoch]({NAME}-validation.png)",
        ]
    )
    return {"table": summary}, body
