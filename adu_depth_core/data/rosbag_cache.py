"""The on-disk cache of a rosbag dataset's decoded frames (`rosbag_dataset.RosbagStereoDataset`).

One memory-mapped `.npy` per array (left, right, depth; measured against per-frame `.npz` in
docs/benchmarks/rosbag_dataset.md), one entry per bag and decode settings, keyed by the bag's identity (path,
file sizes and mtimes, metadata.yaml) and the settings that change decoding; written into a temp folder and
renamed into place when complete, so a reader never sees a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from adu_depth_core.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

CACHE_FORMAT = "adu_depth/rosbag_cache/1"  # bump when the decoded content or layout changes
ARRAYS = ("left", "right", "depth")

# decode(bag, spec, allocate) -> meta with the filled arrays under "arrays"; allocate(name, shape, dtype)
Decode = Callable[[Path, Any, Callable[[str, tuple[int, ...], Any], np.ndarray]], dict[str, Any]]


def bag_identity(path: Path) -> dict[str, Any]:
    """What identifies a bag's content for the cache: resolved path, each file's name, size and mtime,
    and the sha256 of metadata.yaml."""
    path = path.resolve()
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    ident: dict[str, Any] = {"path": str(path), "files": []}
    for f in files:
        st = f.stat()
        ident["files"].append([f.name, st.st_size, st.st_mtime_ns])
    meta = path / "metadata.yaml"
    if meta.is_file():
        ident["metadata_sha256"] = hashlib.sha256(meta.read_bytes()).hexdigest()
    return ident


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def cache_key(path: Path, spec: Any) -> str:
    """The cache entry's key: sha256 of the cache format, the bag's identity and the decode settings."""
    return _sha256_json({"format": CACHE_FORMAT, "bag": bag_identity(path), "decode": asdict(spec)})



class DecodedBag:
    """The decoded frames of one bag: arrays in memory or memory-mapped from its cache entry."""

    def __init__(self, path: Path, name: str, meta: dict[str, Any], source: str,
                 arrays: dict[str, np.ndarray] | None = None, cache_path: Path | None = None):
        self.path, self.name, self.source, self.cache_path = path, name, source, cache_path
        self.stamps = np.asarray(meta["stamps"], dtype=np.int64)
        self.has_gt = np.asarray(meta["has_gt"], dtype=bool)
        self.K = np.asarray(meta["K"], dtype=np.float64)
        self.baseline = float(meta["baseline"])
        self.size = (int(meta["size"][0]), int(meta["size"][1]))
        self.counts = dict(meta["counts"])
        self.rectified_from_raw = bool(meta["rectified_from_raw"])
        self._arrays = arrays

    def __len__(self) -> int:
        return len(self.stamps)

    def array(self, key: str) -> np.ndarray:
        if self._arrays is None:  # opened lazily, once per process (DataLoader workers included)
            assert self.cache_path is not None
            self._arrays = {k: np.load(self.cache_path / f"{k}.npy", mmap_mode="r") for k in ARRAYS}
        return self._arrays[key]

    def check(self) -> None:
        """ValueError when the cache entry's arrays do not fit its meta.json."""
        n, (h, w) = len(self), self.size
        expect = {"left": (n, h, w, 3), "right": (n, h, w, 3), "depth": (n, h, w)}
        for key, shape in expect.items():
            if tuple(self.array(key).shape) != shape:
                raise ValueError(f"{self.cache_path}/{key}.npy has shape {self.array(key).shape}, "
                                 f"expected {shape}")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.cache_path is not None:
            state["_arrays"] = None  # re-map in the receiving process instead of pickling the data
        return state


def _remove_tree(path: Path) -> None:
    """Move a folder aside (atomically) and delete it, so no reader ever sees it half-removed."""
    if not path.exists():
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.rename(path, aside / path.name)
    shutil.rmtree(aside, ignore_errors=True)


def _load_cached(entry: Path, key: str, bag: Path, name: str) -> DecodedBag | None:
    meta_file = entry / "meta.json"
    if not entry.is_dir():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
            raise ValueError(f"{meta_file}: format/key mismatch")
        frames = DecodedBag(bag, name, meta, "hit", cache_path=entry)
        frames.check()
        return frames
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("rosbag cache entry %s is unreadable (%s); rebuilding it", entry, exc)
        _remove_tree(entry)
        return None


def _build_cached(entry: Path, key: str, bag: Path, name: str, spec: Any, decode: Decode) -> DecodedBag:
    """Decode into a temp folder beside `entry` and rename it into place when complete."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".tmp", dir=entry.parent))
    try:
        def allocate(array: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            return np.lib.format.open_memmap(tmp / f"{array}.npy", mode="w+", dtype=dtype, shape=shape)

        meta = decode(bag, spec, allocate)
        arrays = meta.pop("arrays")
        for a in arrays.values():
            a.flush()
        del arrays, a  # close the maps
        for array in ARRAYS:  # on disk before the entry becomes visible
            fd = os.open(tmp / f"{array}.npy", os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        meta.update(format=CACHE_FORMAT, key=key, bag=str(bag.resolve()),
                    decode_sha256=_sha256_json(asdict(spec)))
        # written last (and synced): marks the entry complete
        atomic_write_bytes(tmp / "meta.json", (json.dumps(meta) + "\n").encode())
        try:
            os.rename(tmp, entry)
        except OSError:  # another process (DDP rank) finished the same entry first: use theirs
            if not (entry / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta = json.loads((entry / "meta.json").read_text())
    frames = DecodedBag(bag, name, meta, "built", cache_path=entry)
    frames.check()
    _prune_stale(entry, meta)
    return frames


def _prune_stale(entry: Path, meta: dict[str, Any]) -> None:
    """Remove entries of the same bag path and decode settings but an older bag identity (the bag was
    re-recorded or changed); entries for other settings stay, another config may still use them."""
    prefix = entry.name.rsplit("-", 1)[0] + "-"
    for other in entry.parent.iterdir():
        if other == entry or not other.name.startswith(prefix) or not other.is_dir():
            continue
        try:
            m = json.loads((other / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if m.get("bag") == meta["bag"] and m.get("decode_sha256") == meta["decode_sha256"]:
            log.info("removing stale rosbag cache entry %s (the bag changed)", other)
            _remove_tree(other)


def load_bag_frames(bag: Path, name: str, spec: Any, cache_dir: Path | None, decode: Decode) -> DecodedBag:
    """One bag's decoded frames: from its cache entry, by `decode` into a new entry, or into memory.
    `spec` is the dataclass of every setting that changes decoding (part of the key)."""
    if cache_dir is None:
        def allocate(array: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            return np.empty(shape, dtype=dtype)

        meta = decode(bag, spec, allocate)
        return DecodedBag(bag, name, meta, "memory", arrays=meta.pop("arrays"))
    key = cache_key(bag, spec)
    entry = cache_dir / f"{name}-{key[:16]}"
    frames = _load_cached(entry, key, bag, name)
    return frames if frames is not None else _build_cached(entry, key, bag, name, spec, decode)
