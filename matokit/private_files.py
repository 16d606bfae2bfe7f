"""Files only their owner can read: private directories, and atomic whole-file writes.

Used for every file MatoKit writes (config, token files, journal, cache, token memory, health
output), so that "directories 0700, files 0600" and "readers see the old file or the new one"
are each implemented once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path


def make_private_dir(path: Path) -> None:
    """Create `path` and any missing parents with mode 0700, whatever the umask.

    Existing directories are left as they are. A file standing where a directory should be
    raises NotADirectoryError naming that file; other failures raise OSError.
    """
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    if not current.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(current))
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue  # another process made it first
        os.chmod(directory, 0o700)  # mkdir's mode went through the umask
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))


def write_atomic(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Replace `path` with `text`: a temp file in the same directory, fsync, os.replace.

    The file gets `mode` before it becomes visible; the directory is fsynced afterwards so
    the rename itself survives a crash. On failure the old file is untouched and the temp
    file removed; OSError propagates for the caller to explain.
    """
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
