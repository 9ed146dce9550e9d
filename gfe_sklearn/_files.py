"""Writing files whole or not at all: the one home of the package's atomic writer."""

import errno
import os
import stat
import tempfile
from pathlib import Path


def atomic_write(path, parts):
    """Write the byte strings ``parts`` to ``path`` so that it is complete or unchanged.

    The bytes go to a temporary file beside ``path``, reach the disk (``fsync``) and then
    replace ``path`` in one ``os.replace``: a crash or an interrupt leaves either the old file
    or the new one, never half of one.

    The result is what a Unix tool writing in place would leave: a new file gets the mode
    the umask allows (``0o666 & ~umask``; ``mkstemp`` alone makes it private), a replaced
    file keeps its mode, and a file without write permission (``chmod a-w``) is refused, not
    replaced. A symbolic link is written through: the file it points to is replaced and the
    link stays, as ``>`` in a shell does.

    Raises
    ------
    PermissionError
        ``path`` is read-only; the message says how to replace it.
    FileNotFoundError
        The folder of ``path`` does not exist; the message names it.
    """
    path = Path(os.path.realpath(path))
    mode = _mode_for(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, mode)
        with os.fdopen(handle, "wb") as file:
            for part in parts:
                file.write(part)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mode_for(path):
    """The mode the written file gets; refuses a read-only file and a missing folder."""
    try:
        existing = os.stat(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise FileNotFoundError(
                errno.ENOENT,
                f"cannot write {path.name}: the folder {path.parent} does not exist; create it "
                "first",
                str(path.parent),
            ) from None
        return 0o666 & ~_umask()
    mode = stat.S_IMODE(existing.st_mode)
    # The mode bits, not os.access: root may write anything, yet a file marked read-only
    # was marked so to keep it.
    if not mode & 0o222:
        raise PermissionError(
            errno.EACCES,
            f"{path} is read-only (mode {mode:#o}) and is not replaced; make it writable "
            "(chmod u+w) or remove it, then write again",
            str(path),
        )
    return mode


def _umask():
    """The process's umask, read without changing it where the system allows."""
    try:  # Linux: os.umask can only be read by setting it, which races with other threads
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
