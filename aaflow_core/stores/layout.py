"""The index-directory protocol, whatever the store: staging, atomic publish, manifest, shards.

An index is a directory with a `manifest.json` of format `aaflow-index/1`. A writer stages it
in a directory beside the target (same file system) and publishes it with a rename after
writing the manifest, so a crash or a failed rank never leaves a half-written index where a
good one was, and a directory that is not an aaflow index is never touched. An index written
by N ranks keeps one sub-index per rank (`shard-00000`, ...) listed in its manifest. How the
vectors inside a shard are stored is the store's business (`faiss_store`); its rows are always
`chunks.parquet`, row i matching vector i.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aaflow_core.errors import IndexDirError

ROWS_FILE = "chunks.parquet"
MANIFEST_FILE = "manifest.json"
FORMAT = "aaflow-index/1"
SHARD_DIR = "shard-{:05d}"


def is_aaflow_index(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a published index, or IndexDirError naming the directory."""
    if not is_aaflow_index(path):
        raise IndexDirError(f"{path}: not an aaflow index (no {MANIFEST_FILE} of format {FORMAT})")
    return json.loads((path / MANIFEST_FILE).read_text())


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an aaflow index, and that only when asked."""
    if not path.exists():
        return
    if not path.is_dir():
        raise IndexDirError(f"{path}: exists and is not a directory; refusing to overwrite it")
    if not any(path.iterdir()):
        return
    if not is_aaflow_index(path):
        raise IndexDirError(f"{path}: not empty and not an aaflow index; refusing to overwrite it")
    if not overwrite:
        raise IndexDirError(f"{path}: an aaflow index already exists; pass --overwrite to replace it")


def new_staging(target: Path) -> Path:
    """A fresh hidden directory beside `target`, on the same file system so a rename publishes it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))


def clear_stale(target: Path) -> list[Path]:
    """Remove staging and replaced-index directories that killed runs left beside `target`.

    Call only while holding the target's checkpoint lock: then no other writer owns them.
    """
    stale = [*target.parent.glob(f".{target.name}.staging-*"), *target.parent.glob(f".{target.name}.old-*")]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def publish_staging(staging: Path, target: Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest last, then swap `staging` into `target` by renames (the old index goes last)."""
    body = {"format": FORMAT, **manifest}
    (staging / MANIFEST_FILE).write_text(json.dumps(body, indent=2, sort_keys=True))
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old)
    return target


@dataclass(frozen=True)
class Shard:
    """One sub-index of an index; its rows are global rows offset..offset+rows-1."""

    path: Path
    offset: int
    rows: int

    @property
    def rows_file(self) -> Path:
        return self.path / ROWS_FILE


def index_shards(path: str | os.PathLike[str]) -> list[Shard]:
    """The shards of a published index in global row order: itself, or those its manifest lists."""
    root = Path(path)
    manifest = read_manifest(root)
    listed = manifest.get("shards")
    if not listed:
        return [Shard(root, 0, int(manifest["counts"]["chunks"]))]
    shards, offset = [], 0
    for entry in listed:
        shards.append(Shard(root / entry["dir"], offset, int(entry["rows"])))
        offset += int(entry["rows"])
    return shards
