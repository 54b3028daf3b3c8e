"""Paths a command reads and writes: output paths checked before any work starts, paths taken from split
files and bags confined to their root, and OS errors that name the path they are about.

Output checks raise the project's user errors (ValueError / FileExistsError / PermissionError naming the
path and the fix), so a bad `--json`, `--out-dir` or `--save-vis` fails in one line before a model is
loaded, not after a whole evaluation ran.
"""

from __future__ import annotations

import argparse
import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

_HINTS = {
    errno.ENOSPC: "no space left on the device; free space or choose another output location",
    errno.EDQUOT: "disk quota exceeded; free space or choose another output location",
    errno.EROFS: "read-only file system; choose another output location",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def add_overwrite_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--overwrite", action="store_true", help=f"replace {what} that already exist (default: refuse)"
    )


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: the path it is about and what went wrong (with a fix for full disks)."""
    if exc.errno is None:  # raised by this project with its own message
        return str(exc)
    reason = _HINTS.get(exc.errno) or exc.strerror or os.strerror(exc.errno)
    if exc.filename is None:
        return reason
    other = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    return f"{exc.filename}{other}: {reason}"


@contextmanager
def naming(path: str | Path, *, always: bool = False) -> Iterator[None]:
    """Re-raise an OSError that names no path (a failed `write`, e.g. a full disk) as one naming `path`;
    with `always`, also one that names a temp file behind `path` (the user knows only `path`)."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None or (exc.filename is not None and not always):
            raise
        raise type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path)) from exc


def confine(rel: str, what: str, root: str | Path) -> str:
    """Check a relative path read from a file (a split list) before it is joined to `root`: ValueError when
    it is absolute or climbs out of `root` with `..`. The check is on the text, so symlinks a user placed
    inside the tree (a dataset on another disk) keep working. Returns `rel`."""
    text = rel.replace("\\", "/")
    parts = PurePosixPath(os.path.normpath(text)).parts if text else ()
    if not text or text.startswith("/") or (parts and parts[0] == ".."):
        raise ValueError(f"{what}: path {rel!r} must be relative and stay inside {root}")
    return rel


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_creatable(path: Path, flag: str, is_dir: bool = False) -> None:
    """`path` (a file, or a folder with `is_dir`) can be written: its nearest existing ancestor (the
    folder itself when it exists) is a writable folder."""
    base = _nearest_existing(path if is_dir else path.parent)
    if not base.is_dir():
        raise ValueError(f"{flag} {path}: {base} is a file, so the folder cannot be created there")
    if not os.access(base, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "permission denied", str(base))


def _inside(path: Path, roots: Iterable[str | Path]) -> Path | None:
    """The first input root that `path` equals or lies inside (both resolved), else None."""
    p = path.resolve()
    for root in roots:
        r = Path(root).resolve()
        if p == r or r in p.parents:
            return Path(root)
    return None


def check_output_file(
    path: str | Path, flag: str, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Path:
    """Check an output file before the work: not a folder, not an input, writable, and not replacing an
    existing file unless `overwrite`."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; expected a file path")
    hit = _inside(path, inputs)
    if hit is not None:
        raise ValueError(f"{flag} {path} is an input ({hit}); inputs are never overwritten")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{flag} {path} already exists (pass --overwrite to replace it)")
    _check_creatable(path, flag)
    return path


def check_output_dir(
    path: str | Path,
    flag: str,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    can_overwrite: bool = True,
) -> Path:
    """Check an output folder before the work: not a file, not inside an input (a dataset tree, a bag),
    writable, and empty unless `overwrite` (`can_overwrite`: the command has an --overwrite flag)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file; expected a folder")
    hit = _inside(path, inputs)
    if hit is not None:
        raise ValueError(f"{flag} {path} lies inside the input {hit}; inputs are never modified")
    if path.is_dir() and not overwrite and any(path.iterdir()):
        fix = "pass --overwrite to write into it, or choose" if can_overwrite else "choose"
        raise FileExistsError(f"{flag} {path} already holds files ({fix} a new or empty folder)")
    _check_creatable(path, flag, is_dir=True)
    return path
