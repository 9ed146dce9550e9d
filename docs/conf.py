"""Sphinx configuration: ``python -m sphinx -W -b html docs docs/_build/html``.

The API reference is generated from the docstrings (numpydoc format) by autosummary; the
Markdown pages (engine, precision, persistence, performance, results) are read by
myst-parser.
"""

import shutil
import sys
from pathlib import Path

import mathjax
from numpydoc.xref import DEFAULT_LINKS

import gfe_sklearn

project = "gfe-sklearn"
author = "gfe-sklearn developers"
copyright = "2026, gfe-sklearn developers"
version = release = gfe_sklearn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "README.md"]

autosummary_generate = True
# Class pages list the methods inherited from this package's base classes (fit, transform,
# save, ...) but not scikit-learn's own (get_params, set_output, ...), whose docstrings point
# into scikit-learn's documentation.
autodoc_default_options = {
    "members": True,
    "inherited-members": (
        "BaseEstimator,TransformerMixin,ClassNamePrefixFeaturesOutMixin,"
        "_SetOutputMixin,_MetadataRequester"
    ),
}
# numpydoc lists members itself; autosummary's class template would list them twice.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# Links between the Markdown pages ("performance.md") become cross-references, and headings
# get anchors for links such as "engine.md#solvers".
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# The examples gallery: every script of examples/, the plot_* ones run at their default
# settings (78 s in all on two shared cores) with their figure as the thumbnail, the others
# shown without running (each trains for minutes). The hooks live in docs/_gallery.py.
sys.path.insert(0, str(Path(__file__).parent))
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "reset_argv": "_gallery.reset_argv",
    "reset_modules": ("matplotlib", "_gallery.one_torch_thread"),
    "image_scrapers": ("_gallery.saved_figure_scraper",),
    "download_all_examples": False,
    "show_signature": False,
}

# Formulas are typeset by a copy of MathJax inside the site, not one from a CDN, so they show
# offline. The files come from the django-static-mathjax wheel (the [docs] extra): the TeX
# input with CommonHTML output, its fonts, the TeX extensions it loads on demand and the
# accessibility components its menu offers; the speech maps (4 MB) are left out.
MATHJAX = Path(mathjax.__file__).parent / "static" / "mathjax"
MATHJAX_FILES = [
    "LICENSE",
    "es5/tex-chtml.js",
    "es5/output/chtml",
    "es5/input/tex/extensions",
    "es5/a11y",
]
mathjax_path = "mathjax/tex-chtml.js"  # relative to _static

html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"gfe-sklearn {release}"

# Types in the docstrings ("ndarray of shape (n_features_in_,)") are plain text, not
# cross-references: a trailing underscore would make reST look for a link target.
numpydoc_xref_param_type = True
numpydoc_xref_ignore = "all"
# numpydoc's default aliases point "int", "bool", "array-like", ... into Python's and
# NumPy's docs through intersphinx, which would need the network at build time; without it
# each renders as the unresolved target, "python:int". Every one of them stays a plain word.
numpydoc_xref_aliases = {name: name for name in DEFAULT_LINKS}


def _skip_metadata_request_methods(app, what, name, obj, skip, options):
    # scikit-learn generates set_<method>_request on every estimator; their docstrings
    # point into scikit-learn's own glossary, and the user guide of this package has no
    # metadata routing to document.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def _copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    for name in MATHJAX_FILES:
        source = MATHJAX / name
        destination = target / name.removeprefix("es5/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination, dirs_exist_ok=True)
        else:
            shutil.copyfile(source, destination)


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_request_methods)
    app.connect("build-finished", _copy_mathjax)
