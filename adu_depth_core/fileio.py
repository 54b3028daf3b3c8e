"""Atomic file writes and file digests, torch-free: the bottom floor every writer in the project uses.

A file appears under its final name only when complete (written to a temp file beside it, fsync'd,
renamed); a folder appears only when complete (filled as a temp sibling, renamed). Temp files are named
`.<name>.XXXX.tmp`, so `remove_stale_temps` can clean up after a killed writer. An OSError (a full disk,
no permission) names the path the caller gave, not the temp file (`paths.naming`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adu_depth_core.paths import naming

_UMASK = os.umask(0)
os.umask(_UMASK)


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temp file `.<name>.XXXX.tmp` beside `path`, with the usual permissions (mkstemp gives 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and a rename. An OSError (a full
    disk) names `path` and leaves nothing behind."""
    path = Path(path)
    with naming(path, always=True):
        fd, tmp = _temp_beside(path)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """Copy `src` to `dst` through a temp file beside `dst` and a rename (same permissions as
    `atomic_write_bytes`)."""
    dst = Path(dst)
    with naming(dst, always=True):
        fd, tmp = _temp_beside(dst)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def remove_stale_temps(folder: str | Path, names: tuple[str, ...]) -> list[Path]:
    """Remove the `.<name>.XXXX.tmp` files a killed writer left in `folder` (for each of `names`, which
    may be globs such as `ckpt_*.pt`); returns what was removed."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return sorted(removed)


def is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


@contextmanager
def atomic_output_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside `out_dir`; on success it becomes `out_dir`, on error it is removed.

    `out_dir` must not exist or be an empty folder: a folder that already holds data (or a file) is a
    FileExistsError, so nothing is ever overwritten and nothing half-written is left behind.
    """
    out = Path(out_dir)
    if out.exists() and not is_empty_dir(out):
        raise FileExistsError(f"output directory already holds data: {out} (choose a new or empty folder)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        with naming(out, always=True):  # a full disk names the output folder, not the temp folder
            yield tmp
        if out.exists():
            if not is_empty_dir(out):
                raise FileExistsError(f"output directory was filled by someone else while writing: {out}")
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (read in `chunk`-byte blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
