"""One run per output folder: a lock that the operating system releases when the run ends.

Two runs with the same ``--out`` would both train every unit and append duplicates that
later reports count as seeds. ``flock`` on ``OUT/.lock`` lets one in; it is released by
the kernel when its holder exits, also after ``kill -9``, so no stale lock is left to clear.
"""

import os

from ._common import OutFolderError, make_out_folder

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not guarded
    fcntl = None

LOCK_FILE = ".lock"


def lock_out_folder(out, command):
    """Create ``out`` if missing and hold its lock; returns the open lock file (close to release).

    Raises ``OutFolderError`` naming the process and command that hold it.
    """
    make_out_folder(out)
    try:
        file = open(out / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
    except OSError as exc:  # checked now, not after hours of training
        raise OutFolderError(
            f"Cannot write into the output folder {out}: {exc.strerror}. Give --out a "
            "folder you can write to."
        ) from exc
    if fcntl is None:
        return file
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = file.read().strip() or "a process that did not record itself"
        file.close()
        raise OutFolderError(
            f"{out} is in use by another run ({holder}). Wait for it to finish, or give "
            "this run another --out; two runs in one folder would both train every unit."
        ) from None
    file.seek(0)
    file.truncate()
    file.write(f"process {os.getpid()}: {command}\n")
    file.flush()
    return file
