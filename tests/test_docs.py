"""The documentation keeps up with the code: every public name is in the API reference, and
the README's commands are the ones CI runs."""

import pkgutil
import re
import runpy
from pathlib import Path

import pytest

import gfe_sklearn
from gfe_sklearn import datasets, flow, nn, plotting

ROOT = Path(__file__).resolve().parents[1]
# The registries are dictionaries of names, described in one sentence of the reference.
REGISTRIES = {
    "SOLVERS",
    "FLOWS",
    "ADJOINTS",
    "LOSSES",
    "ALPHAS",
    "GRIDS",
    "STOP_RULES",
    "ACTIVATIONS",
}
PUBLIC_MODULES = [gfe_sklearn, flow, nn, datasets, plotting]


def _api_sections():
    """The names each ``.. currentmodule::`` section of docs/api.rst lists, by module."""
    api = (ROOT / "docs" / "api.rst").read_text()
    sections = re.split(r"^\.\. currentmodule:: ([\w.]+)$", api, flags=re.MULTILINE)
    listed = {}
    for module, body in zip(sections[1::2], sections[2::2]):
        listed.setdefault(module, set()).update(re.findall(r"^   (\w+)$", body, re.MULTILINE))
        listed[module].update(name for name in REGISTRIES if f"``{name}``" in body)
    return listed


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_every_public_name_is_in_the_api_reference(module):
    listed = _api_sections().get(module.__name__, set())
    public = set(module.__all__) - {"__version__"}
    missing = sorted(public - listed)
    assert not missing, f"add {missing} to docs/api.rst under {module.__name__}"


def test_every_public_module_is_checked_against_the_api_reference():
    subpackages = {
        info.name
        for info in pkgutil.iter_modules(gfe_sklearn.__path__)
        if info.ispkg and not info.name.startswith("_")
    }
    checked = {module.__name__.rpartition(".")[2] for module in PUBLIC_MODULES[1:]}
    assert subpackages == checked


def test_parameter_types_are_plain_words_without_intersphinx():
    # numpydoc's default aliases turn "int" into a link into Python's docs; without the
    # network at build time (CI has none) it renders as "python:int".
    xref = pytest.importorskip("numpydoc.xref")
    pytest.importorskip("mathjax")
    conf = runpy.run_path(str(ROOT / "docs" / "conf.py"))
    assert "sphinx.ext.intersphinx" not in conf["extensions"]
    aliases = conf["numpydoc_xref_aliases"]
    linked = sorted(name for name in xref.DEFAULT_LINKS if aliases.get(name) != name)
    assert not linked, f"{linked} would render as unresolved intersphinx targets"


def test_formulas_are_typeset_by_a_mathjax_inside_the_site():
    # CI and readers offline have no CDN; conf.py copies MathJax from the [docs] extra.
    pytest.importorskip("numpydoc.xref")
    pytest.importorskip("mathjax")
    conf = runpy.run_path(str(ROOT / "docs" / "conf.py"))
    assert "://" not in conf["mathjax_path"]
    script = conf["mathjax_path"].removeprefix("mathjax/")
    assert f"es5/{script}" in conf["MATHJAX_FILES"]
    for name in conf["MATHJAX_FILES"]:
        assert (conf["MATHJAX"] / name).exists(), name


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_every_example_opens_with_a_title_for_the_gallery(path):
    # sphinx-gallery makes each script's docstring a page; its first line is the page title.
    first, underline = path.read_text().split("\n")[:2]
    title = first.removeprefix('"""')
    assert title and underline == "=" * len(title), f"{path.name}: underline the title"


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest -q'
    assert f"```bash\n{command}\n```" in readme
    assert f"\n{command}\n" in ci


def test_the_readme_example_is_the_example_script():
    # examples/gridsearch_solvers.py runs the README's example (and a test runs it), so the
    # two must not drift apart.
    readme = (ROOT / "README.md").read_text()
    script = (ROOT / "examples" / "gridsearch_solvers.py").read_text()
    for line in [
        'grid = {"gradientflowencoder__solver": ["lbfgs", "amd"]}',
        "pipe = make_pipeline(MinMaxScaler(clip=True), gfe, StandardScaler(), "
        "LogisticRegression())",
        "search = GridSearchCV(pipe, grid, cv=3).fit(X, y)",
        "X, y = load_digits(return_X_y=True)",
    ]:
        assert line in readme and line in script


def test_the_flake8_settings_mirror_ruffs():
    tomllib = pytest.importorskip("tomllib")
    import configparser

    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    flake8 = configparser.ConfigParser()
    flake8.read(ROOT / "setup.cfg")
    # An sdist's copy also has the [egg_info] section that setuptools writes into it.
    sections = [name for name in flake8.sections() if name != "egg_info"]
    assert sections == ["flake8"], "setup.cfg holds flake8's settings only"
    assert int(flake8["flake8"]["max-line-length"]) == ruff["line-length"]
    ignored = {code.strip() for code in flake8["flake8"]["extend-ignore"].split(",")}
    formatter_conflicts = {"E203", "W503"}
    pycodestyle = {code for code in ruff["lint"]["ignore"] if code[0] in "EW"}
    assert ignored == pycodestyle | formatter_conflicts
