"""Hostile model files: each is refused with a ModelFileError naming the file and the field,
before anything large is allocated, and never by hanging or with another exception."""

import json
import os
import random
import threading

import numpy as np
import pytest
import safetensors
import torch

import gfe_sklearn._model_file as model_file
from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder
from gfe_sklearn._model_file import ModelFileError

from .test_persistence import _rewrite

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def saved(X, small, tmp_path):
    path = tmp_path / "model.safetensors"
    GradientFlowEncoder(**small).fit(X).save(path)
    return path


def _header_and_rest(path):
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    return raw[8 : 8 + length].decode(), raw[8 + length :]


def _write_header(path, text, rest):
    encoded = text.encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + rest)


def _huge_features(content):
    content["fitted"].update(n_features_in_=5_000_000, sample_shape=[5_000_000])


def _huge_hidden(content):
    content["fitted"]["architecture"]["dict"]["hidden_layer_sizes"] = {"tuple": [8, 30000, 30000]}


@pytest.mark.parametrize(
    "edit, field", [(_huge_features, "n_features_in_"), (_huge_hidden, "architecture")]
)
@pytest.mark.parametrize("cls", [GradientFlowEncoder, AutoEncoderBaseline])
def test_a_file_claiming_a_huge_model_is_refused_before_anything_is_built(
    cls, edit, field, X, small, tmp_path, monkeypatch
):
    # 7.2 GB for the hidden layers, 480 MB for the features, in a file of a few kB: only the
    # meta device (shapes without memory) may be built before the file is refused.
    path = tmp_path / "model.safetensors"
    cls(**small).fit(X).save(path)
    _rewrite(path, edit_content=edit)
    devices = []
    build = cls._build_modules

    def spy(self, n_features, architecture, generator, dtype, device):
        devices.append(str(device))
        return build(self, n_features, architecture, generator, dtype, device)

    monkeypatch.setattr(cls, "_build_modules", spy)
    with pytest.raises(ModelFileError, match=rf"{path.name}.*{field}"):
        cls.load(path)
    assert devices == ["meta"]


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda c: c["fitted"].update(device_="cuda:banana"), "device_"),
        (lambda c: c["fitted"]["architecture"]["dict"].pop("activation"), "architecture"),
        (
            lambda c: c["fitted"]["architecture"]["dict"].update(activation="os.system"),
            "activation",
        ),
        (lambda c: c["fitted"]["architecture"]["dict"].update(n_components="2"), "n_components"),
        (
            lambda c: c["fitted"]["architecture"]["dict"].update(hidden_layer_sizes=[8]),
            "hidden_layer",
        ),
        (lambda c: c["fitted"]["optimizer"].update(state=[]), "optimizer"),
        (lambda c: c["fitted"]["optimizer"]["param_groups"][0].update(lr="fast"), "lr"),
        (lambda c: c["fitted"]["optimizer"]["param_groups"][0].update(lr=-1.0), "lr"),
        (lambda c: c["fitted"].update(n_latent=3), "n_latent"),
        # 16 * (2**60 + 1) wraps to 16 in int64: the product must be exact.
        (lambda c: c["fitted"].update(sample_shape=[16, 2**60 + 1]), "sample_shape"),
        (lambda c: c["fitted"].update(sample_shape=[4, 4]), "sample_shape"),
    ],
)
def test_malformed_fitted_fields_are_refused_naming_the_field(saved, edit, field):
    _rewrite(saved, edit_content=edit)
    with pytest.raises(ModelFileError, match=rf"{saved.name}.*{field}"):
        GradientFlowEncoder.load(saved)


def _optimizer_tensor(header):
    return next(name for name in sorted(header) if name.startswith("optimizer_.0.square_avg"))


def test_an_optimizer_state_of_the_wrong_shape_is_refused_at_load(saved):
    def transpose(header):  # same bytes, another shape: a later partial_fit would fail
        entry = header[_optimizer_tensor(header)]
        entry["shape"] = entry["shape"][::-1]

    _rewrite(saved, edit_header=transpose)
    with pytest.raises(ModelFileError, match=rf"{saved.name}.*optimizer state 0\.square_avg"):
        GradientFlowEncoder.load(saved)


@pytest.mark.parametrize(
    "size, match",
    # Beyond 64 bits the safetensors parser refuses the size; between 2**63 and 2**64 it
    # reads it, and torch's signed sizes cannot hold it.
    [(10**30, "safetensors package refuses"), (2**63, "malformed shape")],
)
def test_a_tensor_shape_beyond_int64_is_refused(saved, size, match):
    def edit(header):  # an empty tensor, so that its size is all that is wrong
        header["decoder_.9.weight"] = {"dtype": "F32", "shape": [0, size], "data_offsets": [0, 0]}

    _rewrite(saved, edit_header=edit)
    with pytest.raises(ModelFileError, match=rf"{saved.name}.*{match}"):
        GradientFlowEncoder.load(saved)


def test_a_dtype_the_safetensors_parser_reads_but_model_files_never_hold_is_refused(saved):
    def edit(header):  # same bytes, read as unsigned integers
        entry = header[_optimizer_tensor(header)]
        entry["dtype"] = {"F32": "U32", "F64": "U64"}[entry["dtype"]]

    _rewrite(saved, edit_header=edit)
    safetensors.deserialize(saved.read_bytes())  # a valid layout: the check is ours
    with pytest.raises(ModelFileError, match=rf"{saved.name}.*unknown dtype 'U(32|64)'"):
        GradientFlowEncoder.load(saved)


def test_a_tensor_the_architecture_has_no_place_for_is_refused(saved):
    def edit(header):
        header["decoder_.9.weight"] = {"dtype": "F64", "shape": [0], "data_offsets": [0, 0]}

    _rewrite(saved, edit_header=edit)
    with pytest.raises(ModelFileError, match=r"decoder_\.9\.weight.*no place"):
        GradientFlowEncoder.load(saved)


@pytest.mark.parametrize("where", ["header", "settings"])
def test_duplicate_keys_are_refused(saved, where):
    # The last of two equal keys would win silently, and the safetensors parser takes it.
    header, rest = _header_and_rest(saved)
    if where == "header":
        entry = json.dumps(json.loads(header)["decoder_.0.bias"])
        header = f'{{"decoder_.0.bias": {entry}, {header.lstrip()[1:]}'
        name = "decoder_.0.bias"
    else:
        parsed = json.loads(header)
        content = parsed["__metadata__"]["content"]
        parsed["__metadata__"]["content"] = content.replace(
            '{"format_version": 1', '{"format_version": 1, "format_version": 1'
        )
        assert parsed["__metadata__"]["content"] != content
        header, name = json.dumps(parsed), "format_version"
    _write_header(saved, header, rest)
    safetensors.deserialize(saved.read_bytes())  # accepted there: the check is ours
    with pytest.raises(ModelFileError, match=rf"{saved.name}.*{name!r} twice"):
        GradientFlowEncoder.load(saved)


@pytest.mark.parametrize("where", ["header", "settings"])
def test_deeply_nested_json_is_refused(saved, where):
    deep = "[" * 100_000 + "]" * 100_000
    header, rest = _header_and_rest(saved)
    parsed = json.loads(header)
    if where == "header":
        header = header.rstrip()[:-1] + f', "deep": {deep}}}'
    else:
        parsed["__metadata__"]["content"] = f'{{"format_version": 1, "deep": {deep}}}'
        header = json.dumps(parsed)
    _write_header(saved, header, rest)
    with pytest.raises(ModelFileError, match=rf"{saved.name}.*nested"):
        GradientFlowEncoder.load(saved)


def test_moderately_nested_parameters_are_refused_not_recursed_into(saved):
    def edit(content):
        content["params"]["random_state"] = json.loads("[" * 200 + "]" * 200)

    _rewrite(saved, edit_content=edit)
    with pytest.raises(ModelFileError, match="nested more than"):
        GradientFlowEncoder.load(saved)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_without_a_writer_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            GradientFlowEncoder.load(fifo)
        except Exception as error:  # noqa: BLE001 - the test reports what came out
            outcome.append(error)

    thread = threading.Thread(target=load, daemon=True)  # a hang must not hold pytest
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "load() blocked on a FIFO"
    assert isinstance(outcome[0], ModelFileError) and "not a regular file" in str(outcome[0])


def test_a_directory_is_refused_as_not_a_regular_file(tmp_path):
    with pytest.raises(ModelFileError, match="not a regular file"):
        GradientFlowEncoder.load(tmp_path)


def test_a_file_over_the_size_limit_is_refused_unread(saved, monkeypatch):
    monkeypatch.setattr(model_file, "MAX_FILE_BYTES", saved.stat().st_size - 1)
    monkeypatch.setattr(model_file, "_read", lambda *args: pytest.fail("the file was read"))
    with pytest.raises(ModelFileError, match="larger than"):
        GradientFlowEncoder.load(saved)


def test_random_edits_of_a_file_give_a_model_file_error_or_a_working_model(saved, X):
    # Byte flips in the header and the settings: a clean refusal, or a model that still
    # loads, encodes and continues training; never another exception.
    header, rest = _header_and_rest(saved)
    generator = random.Random(0)
    for _ in range(150):
        edited = list(header)
        for _ in range(generator.randint(1, 3)):
            edited[generator.randrange(len(edited))] = chr(generator.randrange(32, 127))
        _write_header(saved, "".join(edited), rest)
        try:
            loaded = GradientFlowEncoder.load(saved)
        except ModelFileError:
            continue
        try:
            codes = loaded.transform(X[:4])
            loaded.partial_fit(X[:8])
        except ValueError:  # a refusal that names the problem (e.g. non-finite weights)
            continue
        assert np.isfinite(codes).all()
        assert all(torch.isfinite(p).all() for p in loaded.decoder_.parameters())


ODD_VALUES = [
    None,
    True,
    -1,
    0,
    2**70,
    1e308,
    float("nan"),
    "x",
    [],
    {},
    [1, "a"],
    {"tuple": [1, "a"]},
    {"dict": {"a": 1}},
    {"RandomState": None},
]


def _fields(content):
    """Paths to every value of the settings, e.g. ("fitted", "architecture", "dict", "loss")."""
    stack, paths = [((), content)], []
    while stack:
        path, value = stack.pop()
        if path:
            paths.append(path)
        if isinstance(value, dict):
            stack.extend(((*path, key), inner) for key, inner in value.items())
        elif isinstance(value, list) and len(value) < 8:
            stack.extend(((*path, index), inner) for index, inner in enumerate(value))
    return sorted(paths, key=repr)


@pytest.mark.parametrize("cls", [GradientFlowEncoder, AutoEncoderBaseline])
def test_every_settings_field_edited_gives_a_model_file_error_or_a_working_model(
    cls, X, small, tmp_path
):
    path = tmp_path / "model.safetensors"
    cls(**small).fit(X).save(path)
    original = path.read_bytes()
    length = int.from_bytes(original[:8], "little")
    content = json.loads(json.loads(original[8 : 8 + length])["__metadata__"]["content"])
    crashes = _crashes_of_edits(
        path, original, content, ODD_VALUES, 3, seed=0, part="edit_content", cls=cls, X=X
    )
    assert not crashes, "\n".join(crashes)


def _crashes_of_edits(path, original, tree, values, k, *, seed, part, cls, X):
    """Each field of ``tree`` (the settings or the tensor table) set in turn to ``k`` of
    ``values`` drawn at random: the edits whose file neither loads into a working model nor
    is refused cleanly, described."""
    generator, crashes = random.Random(seed), []
    for field in _fields(tree):
        for value in generator.sample(values, k):

            def edit(node, field=field, value=value):
                *parents, last = field
                for key in parents:
                    node = node[key]
                node[last] = value

            path.write_bytes(original)
            _rewrite(path, **{part: edit})
            try:
                _load_and_use(cls, path, X)
            except Exception as error:  # noqa: BLE001 - collected to name every case
                crashes.append(f"{'.'.join(map(str, field))}={value!r}: {error!r:.200}")
    return crashes


def _load_and_use(cls, path, X):
    """Load, encode and train on: a ModelFileError, a named refusal, or no error at all."""
    try:
        loaded = cls.load(path)
    except ModelFileError:
        return
    try:
        loaded.transform(X[:4])
        loaded.partial_fit(X[:8])
        loaded.save(path)
    except ValueError as error:  # a refusal that names the problem (a parameter, NaN weights)
        if type(error).__module__.startswith(("gfe_sklearn", "builtins", "sklearn")):
            return
        raise


def test_every_tensor_table_field_edited_gives_a_model_file_error_or_a_working_model(saved, X):
    original = saved.read_bytes()
    length = int.from_bytes(original[:8], "little")
    header = json.loads(original[8 : 8 + length])
    header.pop("__metadata__")
    odd = [*ODD_VALUES, "F32", "BF16", "I64", [2, 8], [8, 2], [0, 0], [0, 2**63], [1, 2, 3]]
    crashes = _crashes_of_edits(
        saved, original, header, odd, 4, seed=1, part="edit_header", cls=GradientFlowEncoder, X=X
    )
    assert not crashes, "\n".join(crashes)


@pytest.mark.parametrize("value", [{"tuple": [1, "a"]}, ["RMSprop"], 3])
def test_an_optimizer_class_that_is_not_a_name_is_refused(saved, value):
    # Found by the field-editing test above once the record grew a field: a dict there
    # raised "unhashable type" from the lookup.
    _rewrite(saved, edit_content=lambda c: c["fitted"]["optimizer"].update({"class": value}))
    with pytest.raises(ModelFileError, match=rf"{saved.name}.*unknown optimizer state"):
        GradientFlowEncoder.load(saved)


def test_a_file_without_a_parameter_loads_with_its_value_before_the_parameter(saved):
    dropped = ("stop_rule", "fit_max_steps", "compute_dtype")

    def edit(content):
        for name in dropped:
            del content["params"][name]

    _rewrite(saved, edit_content=edit)
    loaded = GradientFlowEncoder.load(saved)
    for name in dropped:
        assert getattr(loaded, name) == GradientFlowEncoder.value_before_parameter(name)
    # Where the default changes behaviour, the value before it is not the default.
    assert GradientFlowEncoder.value_before_parameter("stop_rule") == "loss"
    assert GradientFlowEncoder().stop_rule == "code"


def test_value_before_parameter_names_the_parameters_for_an_unknown_name():
    with pytest.raises(ValueError, match="'stop_tolerance' is not a parameter of Gradient"):
        GradientFlowEncoder.value_before_parameter("stop_tolerance")
