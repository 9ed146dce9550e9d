"""Writing files whole or not at all: the one home of the package's atomic writer."""

import os
import tempfile
from pathlib import Path


def atomic_write(path, parts):
    """Write the byte strings ``parts`` to ``path`` so that it is complete or unchanged.

    The bytes go to a temporary file beside ``path``, reach the disk (``fsync``) and then
    replace ``path`` in one ``os.replace``: a crash or an interrupt leaves either the old file
    or the new one, never half of one. The file is readable by everyone (``0o644``), as a
    plainly written file would be; ``mkstemp`` alone makes it private.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, 0o644)
        with os.fdopen(handle, "wb") as file:
            for part in parts:
                file.write(part)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
