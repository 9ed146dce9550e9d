"""``latent``: t-SNE maps of GFE and AE codes after 1% of the data and after full training."""

import numpy as np

from ._common import fmt, fmt_seconds, markdown_table, save_figure
from ._models import TRAINED, titles
from ._training import (
    STAGE_DEFAULTS,
    STAGE_SMOKE,
    STAGES,
    add_stage_arguments,
    bce,
    check_stage_options,
    load_dataset,
    pending_stage_models,
    subset,
)

NAME = "latent"
TITLE = "Latent space maps (figs. 6-7 of [2])"
SUMMARY = "figs. 6-7: t-SNE maps of GFE-amd and AE codes, 1% and full training"
DESCRIPTION = """\
Figs. 6-7 of [2]: t-SNE maps of the codes of test images, coloured by label, for GFE-amd
(codes found by the flow) and the AE (codes from its encoder), after a small training
budget (600 images, 1% of MNIST) and after full training (one epoch of images for GFE-amd,
twelve epochs' worth for the AE), both on minibatches of 5 images drawn with replacement.
The table adds a number to the pictures: the 5-nearest-neighbour label accuracy in the
latent space (5-fold cross-validation over the mapped test images)."""
N_TEST_HELP = "test images mapped: a fixed random subset of the test set"

DEFAULTS = {"dataset": ["mnist"], "seeds": ["1"], "n_test": 2000, **STAGE_DEFAULTS}
SMOKE = {"n_test": 60, **STAGE_SMOKE}
SELECTORS = set()


def add_arguments(parser):
    add_stage_arguments(parser)


def check_options(args):
    check_stage_options(args)


def knn_accuracy(codes, labels):
    """5-nearest-neighbour label accuracy, stratified 5-fold cross-validated (NaN if too few)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    counts = np.unique(labels, return_counts=True)[1]
    folds = int(min(5, counts.min()))
    if folds < 2:
        return float("nan")
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    neighbours = KNeighborsClassifier(n_neighbors=min(5, len(labels) // 2))
    return float(cross_val_score(neighbours, codes, labels, cv=cv).mean())


def run(ctx):
    from gfe_sklearn.plotting import embed

    args, store = ctx.args, ctx.store
    for dataset in args.dataset:
        data = load_dataset(dataset, data_home=args.data_home, n_train=args.n_train)
        X, y = subset(data.X_test, data.y_test, args.n_test)
        for key, stage, entry in pending_stage_models(ctx, data, dataset):
            model, seed = entry["model"], key["seed"]
            codes = model.transform(X)
            value, _ = bce(model, X)
            points = embed(codes, method="tsne", random_state=seed)
            ctx.guard.check()
            store.add(
                {
                    **key,
                    "stage": stage,
                    "images": entry["seen"],
                    "train_seconds": entry["seconds"],
                    "test_bce": value,
                    "n_test": len(X),
                    "knn_accuracy": knn_accuracy(codes, y),
                    "points": points.round(3),
                    "labels": y,
                    "device": model.device_,
                }
            )
            ctx.reporter.log(
                f"  {titles(args)[key['model']]} seed {seed} {dataset} {stage}: mapped"
            )


def report(ctx):
    from gfe_sklearn.plotting import plot_embedding, subplots

    args, records = ctx.args, ctx.store.records
    title = titles(args)
    seed = args.seeds[0]
    summary, parts, rows = {}, [], []
    for dataset in args.dataset:
        found = {
            (r["model"], r["stage"]): r
            for r in records
            if r["dataset"] == dataset and r["seed"] == seed
        }
        if not found:
            continue
        figure, axes = subplots(len(STAGES), 2, panel_size=(4.2, 4.0))
        for i, stage in enumerate(STAGES):
            for j, model in enumerate(TRAINED):
                r = found.get((model, stage))
                ax = axes[i, j]
                if r is None:
                    ax.set_axis_off()
                    continue
                plot_embedding(
                    np.asarray(r["points"]),
                    np.asarray(r["labels"]),
                    ax=ax,
                    title=f"{title[model]}, {r['images']:,} images\n"
                    f"5-NN accuracy {r['knn_accuracy']:.3f}",
                )
                summary.setdefault(dataset, {})[f"{model}-{stage}"] = {
                    k: r[k] for k in ("images", "train_seconds", "test_bce", "knn_accuracy")
                }
                rows.append(
                    [
                        dataset,
                        title[model],
                        stage,
                        f"{r['images']:,}",
                        fmt(r["test_bce"]),
                        fmt(r["knn_accuracy"], 3),
                        fmt_seconds(r["train_seconds"]),
                    ]
                )
        save_figure(figure, ctx.store.path(f"{NAME}-{dataset}.png"))
        parts += [f"![t-SNE maps, {dataset}]({NAME}-{dataset}.png)", ""]
    if not rows:
        return {"table": summary}, "No finished units yet."
    n_test = records[0]["n_test"]
    body = [
        f"Seed {seed}; {n_test:,} test images. Test BCE of those images; training time of "
        "the model (training only).",
        "",
        markdown_table(
            ["dataset", "model", "stage", "images seen", "test BCE", "5-NN accuracy", "train time"],
            rows,
            align="lllrrrr",
        ),
        "",
        "Rows: small stage (top), full training (bottom); columns: GFE-amd, AE.",
        "",
        *parts,
    ]
    return {"table": summary}, "\n".join(body)
