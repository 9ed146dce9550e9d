"""sphinx-gallery hooks for ``examples/`` (named by string in conf.py, so the config pickles).

The ``plot_*`` scripts draw without pyplot (``gfe_sklearn.plotting.subplots``) and save their
figure to ``--out``; matplotlib's scraper, which collects pyplot's open figures, sees none.
Each script runs as ``python examples/plot_NAME.py --out FILE`` would, at its default
settings, and the file it writes becomes the example's image and thumbnail.
"""

import shutil
from pathlib import Path

from sphinx_gallery.scrapers import figure_rst


def _figure_file(script_vars):
    target = Path(script_vars["target_file"])
    return target.with_name(f"{target.stem}_out.png")


def one_torch_thread(gallery_conf, fname):
    # The estimators default to one thread (n_threads=1); the engine, which
    # plot_gradient_flow.py calls directly, uses torch's own count. Two threads on cores that
    # something else also wants run many times slower than one (docs/performance.md,
    # "Threads under load"), and a docs build shares its machine.
    import torch

    torch.set_num_threads(1)


def reset_argv(gallery_conf, script_vars):
    return ["--out", str(_figure_file(script_vars))]


def saved_figure_scraper(block, block_vars, gallery_conf):
    figure = _figure_file(block_vars)
    if not figure.exists():
        return ""
    image = Path(next(block_vars["image_path_iterator"]))
    shutil.move(figure, image)
    return figure_rst([str(image)], gallery_conf["src_dir"])
