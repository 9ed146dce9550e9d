"""``data-efficiency``: test cross-entropy after a few hundred training images (table 1)."""

from ._common import fmt, fmt_mean_std, fmt_seconds, markdown_table, mean_std, save_figure
from ._models import KINDS, TRAINED, encoder_of, make_model, scored_with, titles
from ._training import draw_stream, load_dataset, scored_fields, subset
from ._units import Unit, run_checkpointed_unit

NAME = "data-efficiency"
TITLE = "Data efficiency (table 1)"
SUMMARY = "table 1: test BCE of AE, GFE-amd and Mixed after 480 to 5760 training images"
DESCRIPTION = """\
Table 1 of the papers: the test-set mean cross-entropy (BCE) of an autoencoder (AE), of
GFE-amd, and of the AE's decoder with the test images encoded by GFE-amd (Mixed), after
480, 960, 1920, 3840 and 5760 training images. Each seed trains every model from scratch on
minibatches (5 images, as in the papers) drawn with replacement from the training set, the
same draws for both models; the test BCE is taken at each budget and training continues
to the next. Mean ± standard deviation over seeds."""
N_TEST_HELP = "test images evaluated: a fixed random subset of the test set"

DEFAULTS = {"dataset": ["mnist"], "seeds": ["3"], "budgets": [480, 960, 1920, 3840, 5760]}
SMOKE = {"seeds": ["2"], "budgets": [20, 40]}
SELECTORS = {"budgets"}
MODELS = tuple(KINDS)

# Reference values, not results: table 1 of [2] (Flouris et al.), MNIST, full test set.
PAPER_TABLE_1 = {
    "mnist": {
        "ae": {480: 0.2660, 960: 0.2618, 1920: 0.2488, 3840: 0.2195, 5760: 0.1954},
        "gfe": {480: 0.2098, 960: 0.1987, 1920: 0.1558, 3840: 0.1336, 5760: 0.1136},
        "mixed": {480: 0.2634, 960: 0.2525, 1920: 0.2323, 3840: 0.2038, 5760: 0.1829},
    },
}


def add_arguments(parser):
    parser.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        metavar="N",
        help="numbers of training images at which the test BCE is taken (default: 480 960 "
        "1920 3840 5760; --smoke: 20 40)",
    )


def check_options(args):
    budgets = sorted(set(args.budgets))
    if budgets[0] < 1:
        raise ValueError(f"--budgets must be positive numbers of images; got {args.budgets}.")
    args.budgets = budgets


def units(ctx):
    args = ctx.args
    for dataset in args.dataset:
        data = load_dataset(dataset, data_home=args.data_home, n_train=args.n_train)
        X_test, _ = subset(data.X_test, data.y_test, args.n_test)
        for seed in args.seeds:
            for kind in TRAINED:
                name = f"{kind}-{data.name}-seed{seed}"
                label = f"{KINDS[kind].title_in(args)} seed {seed} {data.name}"
                yield Unit(name, label, _run_unit, (data, X_test, seed, kind))


def _run_unit(ctx, name, label, data, X_test, seed, kind):
    args = ctx.args
    scored = scored_with(kind)  # the AE's model also gives Mixed's scores

    def due(images):
        return [{"dataset": data.name, "seed": seed, "model": m, "images": images} for m in scored]

    def measure(model, state, key):
        encoder = encoder_of(key["model"], model, args)
        fields, value = scored_fields(encoder, X_test, "test", state, device=model.device_)
        seconds = fields["eval_seconds"]
        message = (
            f"  {KINDS[key['model']].title_in(args)} seed {seed} {data.name} "
            f"{state['seen']} images: test BCE {value:.4f} "
            f"(trained {state['seconds']:.1f} s, scored {seconds:.1f} s)"
        )
        return fields, message

    return run_checkpointed_unit(
        ctx,
        due=due,
        measure=measure,
        checkpoints=args.budgets,
        name=name,
        label=label,
        make=lambda: make_model(kind, args, seed),
        X=data.X_train,
        stream=draw_stream(data, seed),
        skipped="all budgets done, skipped",
    )


def summarize(records, args):
    """``{dataset: {model: {images: {"mean", "std", "n", "train_seconds"}}}}`` over seeds."""
    summary = {}
    for dataset in args.dataset:
        by_model = summary.setdefault(dataset, {})
        for model in MODELS:
            for images in args.budgets:
                found = [
                    r
                    for r in records
                    if r["dataset"] == dataset
                    and r["model"] == model
                    and r["images"] == images
                    and r["seed"] in args.seeds
                ]
                if not found:
                    continue
                mean, std = mean_std([r["test_bce"] for r in found])
                seconds, _ = mean_std([r["train_seconds"] for r in found])
                by_model.setdefault(model, {})[images] = {
                    "mean": mean,
                    "std": std,
                    "n": len(found),
                    "train_seconds": seconds,
                    "n_test": found[0]["n_test"],
                }
    return summary


def report(ctx):
    from gfe_sklearn.plotting import plot_curves

    args = ctx.args
    title = titles(args)
    summary = summarize(ctx.store.records, args)
    parts = []
    for dataset, by_model in summary.items():
        if not by_model:  # no finished unit among the chosen budgets and seeds
            continue
        paper = PAPER_TABLE_1.get(dataset, {})
        n_seeds = max((c["n"] for m in by_model.values() for c in m.values()), default=0)
        n_test = next((c["n_test"] for m in by_model.values() for c in m.values()), None)
        header = [
            "training images",
            "AE",
            title["gfe"],
            "Mixed",
            "AE train time",
            f"{title['gfe']} train time",
        ]
        if paper:
            header += ["AE (paper)", "GFE-amd (paper)", "Mixed (paper)"]
        rows = []
        for images in args.budgets:
            cells = [by_model.get(m, {}).get(images) for m in MODELS]
            if not any(cells):
                continue
            row = [f"{images:,}"] + [fmt_mean_std(c["mean"], c["std"]) if c else "–" for c in cells]
            row += [fmt_seconds(c["train_seconds"]) if c else "–" for c in cells[:2]]
            if paper:
                row += [fmt(paper[m].get(images)) for m in MODELS]
            rows.append(row)
        curves = {
            title[m]: {
                "x": sorted(by_model[m]),
                "y": [by_model[m][i]["mean"] for i in sorted(by_model[m])],
                "yerr": [by_model[m][i]["std"] for i in sorted(by_model[m])],
            }
            for m in MODELS
            if m in by_model
        }
        reference = {title[m]: (sorted(v), [v[i] for i in sorted(v)]) for m, v in paper.items()}
        ax = plot_curves(
            curves,
            reference=reference,
            xlabel="training images seen",
            ylabel="test mean cross-entropy",
            logx=True,
            title=f"{dataset}: test BCE vs training images",
        )
        figure = f"{NAME}-{dataset}.png"
        save_figure(ax, ctx.store.path(figure))
        parts += [
            f"## {dataset}",
            "",
            f"Test BCE, mean ± std over {n_seeds} seed(s), on {n_test:,} test images; train "
            "time is the mean time spent training up to that budget (models only, no "
            "evaluation). Paper columns: table 1 of the papers (full test set), for reference.",
            "",
            markdown_table(header, rows),
            "",
            f"![test BCE against training images]({figure})",
            "",
        ]
    if not parts:
        parts = ["No finished units yet."]
    return {"table": summary}, "\n".join(parts)
