"""``reconstructions``: test-set reconstructions after 1% and after full training."""

import numpy as np

from ._common import fmt, fmt_seconds, markdown_table, save_figure
from ._models import TRAINED, titles
from ._training import (
    DATASETS,
    STAGE_DEFAULTS,
    STAGE_SMOKE,
    STAGES,
    add_stage_arguments,
    bce,
    check_stage_options,
    load_dataset,
    one_per_class,
    pending_stage_models,
)

NAME = "reconstructions"
TITLE = "Test-set reconstructions (fig. 3 of [1], fig. 5 of [2])"
SUMMARY = "fig. 3/5: test reconstructions of GFE-amd and AE, 1% and full training"
DESCRIPTION = """\
Fig. 3 of [1] / fig. 5 of [2]: reconstructions of the same test images (the first test
image of each class, in label order) by GFE-amd and by the AE, after a small training
budget (600 images, 1% of MNIST) and after full training (one epoch of images for GFE-amd,
twelve epochs' worth for the AE), on minibatches of 5 images drawn with replacement."""
N_TEST_HELP = "test images shown, cycling through the classes"

DEFAULTS = {"dataset": ["mnist", "fashion-mnist"], "seeds": ["1"], "n_test": 10, **STAGE_DEFAULTS}
SMOKE = {"n_test": 10, **STAGE_SMOKE}
SELECTORS = set()


def add_arguments(parser):
    add_stage_arguments(parser)


def check_options(args):
    check_stage_options(args)


def run(ctx):
    from gfe_sklearn.plotting import reconstruct

    args, store = ctx.args, ctx.store
    for dataset in args.dataset:
        data = load_dataset(dataset, data_home=args.data_home, n_train=args.n_train)
        X, y = one_per_class(data.X_test, data.y_test, args.n_test)
        for key, stage, entry in pending_stage_models(ctx, data, dataset):
            model = entry["model"]
            value, _ = bce(model, X)
            images = reconstruct(model, X)
            ctx.guard.check()
            store.add(
                {
                    **key,
                    "stage": stage,
                    "images": entry["seen"],
                    "train_seconds": entry["seconds"],
                    "bce_shown": value,
                    "labels": y,
                    "image_shape": data.image_shape,
                    "originals": X.round(3),
                    "reconstructions": images.round(3),
                    "device": model.device_,
                }
            )


def report(ctx):
    from gfe_sklearn.plotting import plot_reconstructions, subplots

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
        figure, axes = subplots(len(STAGES), 1, panel_size=(0.55 * args.n_test + 1.4, 2.2))
        for ax, stage in zip(axes[:, 0], STAGES, strict=True):
            shown = {
                f"{title[m]} ({found[m, stage]['images']:,})": np.asarray(
                    found[m, stage]["reconstructions"]
                )
                for m in TRAINED
                if (m, stage) in found
            }
            if not shown:
                ax.set_axis_off()
                continue
            first = next(found[m, stage] for m in TRAINED if (m, stage) in found)
            plot_reconstructions(
                shown,
                np.asarray(first["originals"]),
                image_shape=first["image_shape"],
                ax=ax,
                title=f"{DATASETS[dataset][0]}: {stage} training",
            )
        save_figure(figure, ctx.store.path(f"{NAME}-{dataset}.png"))
        for (model, stage), r in sorted(found.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            summary.setdefault(dataset, {})[f"{model}-{stage}"] = {
                k: r[k] for k in ("images", "train_seconds", "bce_shown")
            }
            rows.append(
                [
                    dataset,
                    title[model],
                    stage,
                    f"{r['images']:,}",
                    fmt(r["bce_shown"]),
                    fmt_seconds(r["train_seconds"]),
                ]
            )
        parts += [f"![reconstructions, {dataset}]({NAME}-{dataset}.png)", ""]
    if not rows:
        return {"table": summary}, "No finished units yet."
    body = [
        f"Seed {seed}. Top row of each panel: the test images; below: reconstructions, with "
        "the number of training images seen. BCE of the images shown; training time only.",
        "",
        markdown_table(
            ["dataset", "model", "stage", "images seen", "BCE of shown images", "train time"],
            rows,
            align="lllrrr",
        ),
        "",
        *parts,
    ]
    return {"table": summary}, "\n".join(body)
