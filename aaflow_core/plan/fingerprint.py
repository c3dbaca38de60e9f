"""Plan fingerprints: sha256 of canonical JSON plus the versions of packages that shape outputs."""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import metadata

VERSIONED = ("aaflow", "pyarrow", "numpy", "torch", "faiss-cpu", "sentence-transformers", "transformers", "onnx",
             "onnxruntime")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Installed versions of the packages whose behaviour decides output bits."""
    out: dict[str, str] = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def fingerprint(plan_json: str) -> str:
    body = json.dumps({"plan": json.loads(plan_json), "versions": package_versions()}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()
