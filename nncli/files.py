"""Crash-safe file writing, run folders, and the CSV text of result files.

Every result file is written to a temporary file in the same folder, flushed
and fsync'd, renamed over the target (atomic on POSIX), and the folder is
fsync'd so the rename itself survives a power cut. A process killed at any
instant leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import errno
import io
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import RunFolderError, WriteError


def _describe(exc: OSError, path: Path) -> str:
    reason = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOENT: "no such folder",
        errno.ENOTDIR: "a parent is not a folder",
    }.get(exc.errno, exc.strerror or str(exc))
    return f"{path}: cannot write ({reason})"


def _file_mode() -> int:
    """rw for whoever the umask allows, as open() would give (mkstemp alone gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through `write(file)` atomically; on failure the old file is untouched."""
    path = Path(path)
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, _MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        fsync_dir(path.parent)
    except OSError as exc:
        kept = "; the previous version is intact" if path.exists() else ""
        raise WriteError(_describe(exc, path) + kept) from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_link(source: str | Path, target: str | Path) -> None:
    """Make `target` a second name for `source`'s bytes, atomically; `source` must be complete (fsync'd).

    A hard link costs no copy. It is made under a temporary name (`.<target>.<random>.tmp`,
    like atomic_write's, so a killed run's leftover is cleared the same way), renamed over
    `target` and the folder fsync'd; the previous `target` is intact until the rename.
    Where hard links are refused (some file systems), the bytes are copied with atomic_write.
    Every nncli file is replaced by rename, never rewritten in place, so the two names never
    see each other's later versions.
    """
    source, target = Path(source), Path(target)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        os.link(source, tmp)
    except OSError:
        with open(source, "rb") as f:
            atomic_write(target, lambda out: shutil.copyfileobj(f, out))
        return
    try:
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        kept = "; the previous version is intact" if target.exists() else ""
        raise WriteError(_describe(exc, target) + kept) from None


def _numbered(wanted: Path, n: int, keep_suffix: bool = False) -> Path:
    """wanted, then wanted-2, wanted-3, ... (file names keep their suffix: plot-2.png)."""
    if n == 1:
        return wanted
    if keep_suffix:
        return wanted.with_name(f"{wanted.stem}-{n}{wanted.suffix}")
    return wanted.with_name(f"{wanted.name}-{n}")


def read_at_most(f: BinaryIO, limit: int, chunk: int = 1 << 20) -> bytes:
    """Up to limit + 1 bytes of `f` (one more tells the caller it is too large), read in chunks:
    /dev/zero or an endless pipe ends at the limit, and a small file costs only its own size
    (a single read(limit + 1) would allocate the whole limit up front)."""
    parts, size = [], 0
    while size <= limit:
        part = f.read(min(chunk, limit + 1 - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def new_run_folder(wanted: str | Path) -> Path:
    """Create `wanted`, or `wanted-2`, `-3`, ... if it exists and is not empty. Never reuses a run.

    `wanted` being a file (`--out config.yaml`, `--out /dev/null`) is a mistake, not a name to number.
    """
    wanted = Path(wanted)
    if wanted.exists() and not wanted.is_dir():
        raise RunFolderError(f"{wanted}: is a file, not a folder; a run folder cannot be made there")
    try:
        wanted.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(_describe(exc, wanted.parent)) from None
    for n in range(1, 10_000):
        candidate = _numbered(wanted, n)
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            if candidate.is_dir() and not any(candidate.iterdir()):
                return candidate  # an empty folder holds no earlier results
        except OSError as exc:
            raise RunFolderError(_describe(exc, candidate)) from None
    raise RunFolderError(f"{wanted}: too many runs with this name")


def unique_path(wanted: str | Path) -> Path:
    """Reserve `wanted`, or `stem-2.suffix`, `-3`, ...: the first name that is free, created empty.

    O_CREAT|O_EXCL makes the reservation atomic, so two processes never pick the
    same name; the caller then replaces the empty file (atomic_write) or removes it.
    A missing or unwritable folder is a RunFolderError (exit status 2).
    """
    wanted = Path(wanted)
    for n in range(1, 10_000):
        candidate = _numbered(wanted, n, keep_suffix=True)
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _MODE))
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunFolderError(_describe(exc, candidate)) from None
    raise RunFolderError(f"{wanted}: too many files with this name")


# -- CSV -------------------------------------------------------------------------
def csv_cell(value) -> str:
    """One cell: empty for None and NaN, true/false for booleans, floats at full precision (repr)."""
    if value is None:
        return ""
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if not math.isnan(value) else ""
    return str(value)


def csv_row(values: Iterable) -> str:
    """One CSV line, newline included; cells quoted only where CSV needs it."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([csv_cell(v) for v in values])
    return out.getvalue()


def csv_line(columns: Sequence[str], row: dict) -> str:
    """`row`'s values in `columns` order (missing keys are empty cells)."""
    return csv_row(row.get(c) for c in columns)


def csv_text(columns: Sequence[str], rows: Iterable[dict]) -> str:
    """A header line, then one line per row."""
    return csv_row(columns) + "".join(csv_line(columns, row) for row in rows)
