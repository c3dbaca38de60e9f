"""A real demo corpus with no download: the standard library's own documentation, via pydoc."""
from __future__ import annotations

import importlib
import pydoc
from pathlib import Path

# Documentation-rich modules that import without side effects, in a fixed order.
MODULES = (
    "argparse", "re", "collections", "json", "pathlib", "os", "asyncio", "typing", "functools", "itertools",
    "datetime", "decimal", "fractions", "statistics", "random", "math", "string", "textwrap", "logging",
    "subprocess", "threading", "queue", "socket", "urllib.parse", "csv", "sqlite3", "shutil", "tempfile",
    "zipfile", "tarfile", "hashlib", "heapq", "bisect", "enum", "dataclasses", "contextlib", "inspect", "abc",
    "io", "struct", "pickle", "copy", "pprint", "difflib", "gzip", "configparser", "uuid", "time", "calendar",
    "glob", "fnmatch", "operator", "weakref", "array", "unittest", "email.message", "http.client",
    "xml.etree.ElementTree", "html.parser", "base64", "binascii", "codecs", "locale", "gettext", "shlex",
)


def write_stdlib_corpus(folder: str | Path, size_bytes: int = 2**20) -> list[Path]:
    """Write `<module>.txt` pydoc pages into `folder` until at least `size_bytes` are written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    total = 0
    for name in MODULES:
        if total >= size_bytes:
            break
        text = pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext)
        path = out / f"{name}.txt"
        path.write_text(text, encoding="utf-8")
        written.append(path)
        total += len(text.encode())
    return written
