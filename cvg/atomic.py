"""Atomic file writes with clear errors: the one way every cvg writer puts a file on disk.

``atomic_path(path)`` yields a temporary path beside ``path``; the writer fills it, and on
success it is renamed over ``path`` in one step, so a reader never sees half a file and a
killed job leaves the previous version (or nothing). On any failure the temporary file is
removed; an OS error (a full disk, a read-only folder, a quota) becomes one ``WriteError`` that
names the path and the OS's reason, whatever library raised it (torch's "enforce fail at
inline_container.cc", h5py's "Can't write data", pandas' ``OSError``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd

from cvg.errors import CvgError

# what libraries put in their own messages when the OS refused a write
_OS_HINTS = {
    errno.ENOSPC: re.compile(r"no space left|errno = 28|error code: 28|ENOSPC|disk full", re.I),
    errno.EDQUOT: re.compile(r"quota exceeded|EDQUOT", re.I),
    errno.EROFS: re.compile(r"read-only file system|EROFS", re.I),
    errno.EACCES: re.compile(r"permission denied|EACCES", re.I),
}


class WriteError(OSError, CvgError):
    """A file could not be written: ``errno`` is the OS's reason, the message names the file and
    says the reason once (``WriteError(errno, message)``; ``str`` is the message alone)."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def temp_path(path: Path) -> Path:
    """The temporary name ``atomic_path`` writes ``path`` under (hidden, same folder, same suffix)."""
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


def _os_reason(exc: BaseException, folder: Path) -> tuple[int, str]:
    """The OS's reason for a failed write (errno, text), also when a library hid the errno in its message."""
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno, os.strerror(exc.errno)
    text = str(exc)
    for code, pattern in _OS_HINTS.items():
        if pattern.search(text):
            return code, os.strerror(code)
    try:  # a library that lost the errno: a full disk is the usual cause, and checkable
        if shutil.disk_usage(folder).free < 1 << 20:
            return errno.ENOSPC, os.strerror(errno.ENOSPC)
    except OSError:
        pass
    return errno.EIO, text.strip().splitlines()[-1] if text.strip() else type(exc).__name__


def _is_write_failure(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    # torch.save and h5py report OS failures as RuntimeError / their own errors
    return isinstance(exc, RuntimeError) and bool(re.search(r"inline_container|write|file|errno|space", str(exc), re.I))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; rename it over ``path`` on success.

    Failures remove the temporary file; OS errors are re-raised as ``WriteError`` naming
    ``path``. Other errors (a bug in the writer) propagate unchanged, after the clean-up."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, WriteError):  # said already (by ``ensure_free``): name the file, not its temporary
            raise WriteError(exc.errno, str(exc).replace(str(tmp), str(path))) from exc.__cause__
        if not _is_write_failure(exc):
            raise
        code, reason = _os_reason(exc, path.parent)
        raise WriteError(code, f"cannot write {path}: {reason}") from exc


def ensure_free(path: str | os.PathLike, nbytes: int) -> None:
    """Raise ``WriteError`` (ENOSPC) naming ``path`` unless its folder has ``nbytes`` free. For
    writers whose library crashes instead of failing on a refused write (HDF5)."""
    folder = Path(path).parent
    free = shutil.disk_usage(folder).free
    if free < nbytes:
        raise WriteError(errno.ENOSPC, f"cannot write {path}: {os.strerror(errno.ENOSPC)} ({free:,} bytes free in {folder}, {nbytes:,} needed)")


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)
