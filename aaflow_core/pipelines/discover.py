"""Turn user paths into an ordered list of files; what cannot be used is reported, not fatal."""
from __future__ import annotations

import os
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path

from aaflow_core.errors import SkippedItem
from aaflow_core.plan.specs import TEXT_SUFFIXES


def _wanted(rel: str, glob: str | None) -> bool:
    if glob is None:
        return rel.lower().endswith(TEXT_SUFFIXES)
    return fnmatch(rel, glob) or fnmatch(os.path.basename(rel), glob)


def discover(paths: Sequence[str | os.PathLike[str]], glob: str | None = None) -> tuple[list[tuple[str, str]], list[SkippedItem]]:
    """Return ([(absolute path, source name)], skipped) in a deterministic order.

    A directory contributes its matching files in sorted order, named `<dir name>/<relative
    path>`; a file named directly is always taken, named by its file name.
    """
    found: list[tuple[str, str]] = []
    skipped: list[SkippedItem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append((str(path.resolve()), path.name))
        elif path.is_dir():
            before = len(found)
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    full = Path(root) / name
                    rel = full.relative_to(path).as_posix()
                    if _wanted(rel, glob):
                        found.append((str(full.resolve()), f"{path.resolve().name}/{rel}"))
            if len(found) == before:
                what = f"matching {glob!r}" if glob else f"with a suffix in {', '.join(TEXT_SUFFIXES)}"
                skipped.append(SkippedItem(str(raw), f"directory has no files {what}"))
        elif path.exists():
            skipped.append(SkippedItem(str(raw), "not a regular file or directory"))
        else:
            skipped.append(SkippedItem(str(raw), "no such file or directory"))
    return found, skipped
