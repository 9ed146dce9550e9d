"""The atomic writer leaves files as a Unix tool writing in place would: umask, kept mode,
read-only files kept, symbolic links written through, a missing folder named."""

import os
import stat

import pytest

from gfe_sklearn import GradientFlowEncoder
from gfe_sklearn._files import atomic_write

pytestmark = [
    pytest.mark.skipif(os.name != "posix", reason="POSIX modes and links"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]


@pytest.fixture
def umask():
    """Set the umask for one test, restoring the session's afterwards."""
    before = os.umask(0o022)
    yield os.umask
    os.umask(before)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o077, 0o600), (0o022, 0o644), (0o002, 0o664)])
def test_a_new_file_gets_the_mode_the_umask_allows(umask, mask, expected, tmp_path):
    umask(mask)
    atomic_write(tmp_path / "f", [b"x"])
    assert _mode(tmp_path / "f") == expected


def test_a_replaced_file_keeps_its_mode(umask, X, small, tmp_path):
    # A private model re-saved stays private, whatever the umask.
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old")
    path.chmod(0o600)
    GradientFlowEncoder(**small).fit(X).save(path)
    assert _mode(path) == 0o600
    assert GradientFlowEncoder.load(path).n_features_in_ == X.shape[1]


def test_a_read_only_file_is_refused_and_kept(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    path.chmod(0o444)
    with pytest.raises(PermissionError, match=r"read-only \(mode 0o444\).*chmod u\+w"):
        atomic_write(path, [b"new"])
    assert path.read_bytes() == b"old" and _mode(path) == 0o444
    assert os.listdir(tmp_path) == ["f"]


def test_a_symbolic_link_is_written_through(tmp_path):
    target, link = tmp_path / "target", tmp_path / "link"
    target.write_bytes(b"old")
    target.chmod(0o640)
    link.symlink_to(target)
    atomic_write(link, [b"new"])
    assert link.is_symlink() and target.read_bytes() == b"new" and _mode(target) == 0o640


def test_saving_into_a_missing_folder_names_the_folder(X, small, tmp_path):
    folder = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=f"folder {folder} does not exist") as error:
        GradientFlowEncoder(**small).save(folder / "model.safetensors")
    assert error.value.filename == str(folder) and ".tmp" not in str(error.value)
