"""``curves``: validation cross-entropy against images seen and against time (fig. 1)."""

import numpy as np

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
from ._training import DrawStream, holdout, load_dataset, scored_fields
from ._units import Unit, run_checkpointed_unit

NAME = "curves"
TITLE = "Learning curves: images seen and wall time (fig. 1)"
SUMMARY = "fig. 1: validation BCE vs images seen and vs wall time, AE vs GFE-amd"
DESCRIPTION = """\
Fig. 1 of [1] (fig. 4 of [2]): validation mean cross-entropy (BCE) of an AE and of
GFE-amd against the number of training images seen and against training time. Both
train on the same minibatches (5 images drawn with replacement from the training set
less a held-out validation split), with Adam as the papers state for this figure; the
validation BCE is taken at geometrically spaced numbers of images. Time counts training
only (no evaluation), on this machine."""
N_TEST_HELP = "validation images, held out of the training set"

DEFAULTS = {
    "dataset": ["mnist"],
    "seeds": ["1"],
    "n_test": 1000,
    "optimizer": "adam",
    "max_images": 60000,
    "ae_max_images": None,
    "checkpoints": 16,
}
SMOKE = {"n_test": 20, "max_images": 100, "checkpoints": 3}
SELECTORS = set()
MODELS = tuple(kind for kind in KINDS if kind in TRAINED)
# The option that sets each kind's training images.
MAX_IMAGES = {"gfe": "max_images", "ae": "ae_max_images"}


def add_arguments(parser):
    parser.add_argument(
        "--max-images",
        type=int,
        metavar="N",
        help="training images seen by GFE-amd, and by the AE unless "
        "--ae-max-images is given (default: 60000; --smoke: 100)",
    )
    parser.add_argument(
        "--ae-max-images",
        type=int,
        metavar="N",
        help="training images seen by the AE (default: --max-images)",
    )
    parser.add_argument(
        "--checkpoints",
        type=int,
        metavar="K",
        help="validations per model, geometrically spaced (default: 16; --smoke: 3)",
    )


def check_options(args):
    if args.ae_max_images is None:
        args.ae_max_images = args.max_images
    require_at_least_one(args, "max_images", "ae_max_images", "checkpoints")


def checkpoints(max_images, k, batch_size):
    """``k`` image counts from ten minibatches to ``max_images``, geometrically spaced."""
    first = max(batch_size, min(10 * batch_size, max_images))
    points = np.geomspace(first, max_images, k) if k > 1 else np.array([max_images])
    points = np.maximum(batch_size, np.round(points / batch_size) * batch_size).astype(int)
    points[-1] = max_images
    return sorted(set(int(p) for p in points))


def units(ctx):
    args = ctx.args
    for dataset in args.dataset:
        data = load_dataset(dataset, data_home=args.data_home, n_train=args.n_train)
        X_train, _, X_val, _ = holdout(data.X_train, data.y_train, args.n_test)
        for seed in args.seeds:
            for kind in TRAINED:
                name = f"{kind}-{dataset}-seed{seed}"
                label = f"{KINDS[kind].title_in(args)} seed {seed} {dataset}"
                yield Unit(name, label, _run_unit, (dataset, X_train, X_val, seed, kind))


def _run_unit(ctx, name, label, dataset, X_train, X_val, seed, kind):
    args = ctx.args
    points = checkpoints(getattr(args, MAX_IMAGES[kind]), args.checkpoints, args.batch_size)

    def due(images):
        return [{"dataset": dataset, "seed": seed, "model": kind, "images": images}]

    def measure(model, state, key):
        fields, value = scored_fields(model, X_val, "val", state)
        message = (
            f"  {label} {state['seen']} images: validation BCE {value:.4f} "
            f"({state['seconds']:.1f} s training)"
        )
        return fields, message

    return run_checkpointed_unit(
        ctx,
        due=due,
        measure=measure,
        checkpoints=points,
        name=name,
        label=label,
        make=lambda: make_model(kind, args, seed),
        X=X_train,
        stream=DrawStream(len(X_train), sampler_rng(seed, 0)),
    )


def _series(records, dataset, model, seeds):
    found = [
        r for r in records if r["dataset"] == dataset and r["model"] == model and r["seed"] in seeds
    ]
    images = sorted({r["images"] for r in found})
    bces = [mean_std([r["val_bce"] for r in found if r["images"] == i]) for i in images]
    seconds = [mean_std([r["train_seconds"] for r in found if r["images"] == i])[0] for i in images]
    return {
        "images": images,
        "val_bce": [b[0] for b in bces],
        "val_bce_std": [b[1] for b in bces],
        "train_seconds": seconds,
    }


def _first_reaching(series, level):
    for images, value, seconds in zip(
        series["images"], series["val_bce"], series["train_seconds"], strict=True
    ):
        if value <= level:
            return images, seconds
    return None, None


def report(ctx):
    from gfe_sklearn.plotting import plot_curves, subplots

    args, records = ctx.args, ctx.store.records
    title = titles(args)
    summary, parts = {}, []
    for dataset in args.dataset:
        series = {m: _series(records, dataset, m, args.seeds) for m in MODELS}
        series = {m: s for m, s in series.items() if s["images"]}
        if not series:
            continue
        summary[dataset] = series
        figure, axes = subplots(1, 2)
        for ax, x, xlabel in (
            (axes[0, 0], "images", "training images seen"),
            (axes[0, 1], "train_seconds", "training time (s)"),
        ):
            curves = {
                title[m]: {"x": s[x], "y": s["val_bce"], "yerr": s["val_bce_std"]}
                for m, s in series.items()
            }
            plot_curves(
                curves,
                ax=ax,
                xlabel=xlabel,
                ylabel="validation mean cross-entropy",
                logx=True,
                title=dataset,
            )
        save_figure(figure, ctx.store.path(f"{NAME}-{dataset}.png"))

        rows = []
        for m, s in series.items():
            per_image = s["train_seconds"][-1] / s["images"][-1]
            rows.append(
                [
                    title[m],
                    f"{s['images'][-1]:,}",
                    fmt_mean_std(s["val_bce"][-1], s["val_bce_std"][-1]),
                    fmt_seconds(s["train_seconds"][-1]),
                    f"{1000 * per_image:.2f} ms",
                ]
            )
        finals = [s["val_bce"][-1] for s in series.values()]
        start = max(s["val_bce"][0] for s in series.values())
        levels = [max(finals) + f * (start - max(finals)) for f in (0.5, 0.25, 0.0)]
        reach = []
        for level in levels:
            row = [fmt(level)]
            for m in MODELS:
                images, seconds = _first_reaching(series[m], level) if m in series else (None, None)
                row += [f"{images:,}" if images else "not reached", fmt_seconds(seconds)]
            reach.append(row)
        parts += [
            f"## {dataset}",
            "",
            f"Validation BCE on {ctx.store.find(dataset=dataset)['n_val']:,} held-out "
            f"training images, mean (± std) over {len(args.seeds)} seed(s).",
            "",
            markdown_table(
                ["model", "images seen", "final val BCE", "train time", "time per image"], rows
            ),
            "",
            "First validation at or below a BCE level (images seen, training time):",
            "",
            markdown_table(
                ["val BCE level"] + [f"{title[m]} {x}" for m in MODELS for x in ("images", "time")],
                reach,
            ),
            "",
            f"![validation BCE against images seen and time]({NAME}-{dataset}.png)",
            "",
        ]
    return {"series": summary}, "\n".join(parts) or "No finished units yet."
