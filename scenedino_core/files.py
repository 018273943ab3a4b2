"""File helpers: atomic writes, existence checks with a clear error, and content hashes.

Atomic writes go to a temporary file in the target's folder, are fsynced, then renamed over the target: readers never
see a half-written file, and if a write fails, an existing file is left as it was and no temporary file remains.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "file_sha256", "require_file"]


def _default_mode() -> int:
    """0o666 minus the process umask (``mkstemp`` creates 0o600 files)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; if the block succeeds, fsync that file and rename it over ``path``.

    The temporary file is hidden (``.NAME.XXXXXX.tmp``) and already exists, empty. Writers that pick a format from
    the file extension need the format spelled out or an open file (``savefig(..., format="png")``,
    ``np.savez(open_file, ...)``). If the block raises, the temporary file is removed and the exception propagates.
    The result gets the permissions a plain ``open(path, "w")`` would give: 0o666 minus the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_path``); returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, encoded as UTF-8 (see ``atomic_path``); returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def require_file(path: str | Path, what: str = "file") -> Path:
    """``path`` as a ``Path`` if it is a file; otherwise ``FileNotFoundError("{what} not found: {path}")``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def file_sha256(path: str | Path, what: str = "file", block: int = 1 << 22) -> str:
    """Hex SHA-256 of a file; ``FileNotFoundError`` naming ``what`` and the path if it is missing."""
    path = require_file(path, what)
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()
