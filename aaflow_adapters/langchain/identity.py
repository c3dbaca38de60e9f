"""Stable identities for a checkpoint: what chain it was made by, and which inputs.

A chain is identified by LangChain's own serialisation (`dumpd`) where it has one. Parts that
LangChain cannot serialise (lambdas, LangGraph graphs, `create_agent` agents) are identified
by their type, their graph's nodes and edges, and for functions their qualified name, a hash
of their source and the serialisable values they close over (the model and prompt of a
`create_agent` node). Memory addresses never enter an identity.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.load.serializable import Serializable, to_json_not_implemented
from langchain_core.runnables import Runnable

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_DEPTH = 4  # how far closures and graph nodes are followed


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _function(fn: Any, depth: int) -> dict[str, Any]:
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        source = code.co_code.hex() if code is not None else repr(fn)
    form: dict[str, Any] = {"function": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}",
                            "source_sha256": sha256(_ADDRESS.sub("", source))}
    cells = getattr(fn, "__closure__", None) or ()
    names = getattr(getattr(fn, "__code__", None), "co_freevars", ())
    closed = {}
    for name, cell in zip(names, cells):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, (str, int, float, bool)) or value is None or isinstance(value, Runnable):
            closed[name] = stable_form(value, depth - 1)
    if closed:
        form["closure"] = closed
    return form


def _unserialisable(obj: Any, form: dict[str, Any], depth: int) -> dict[str, Any]:
    """`dumpd`'s not_implemented entry made stable and informative."""
    out = {k: v for k, v in form.items() if k != "repr"}
    out["repr"] = _ADDRESS.sub("", str(form.get("repr", "")))
    if depth <= 0:
        return out
    for attr in ("func", "afunc"):
        fn = getattr(obj, attr, None)
        if callable(fn):
            out[attr] = _function(fn, depth)
    nodes = getattr(obj, "nodes", None)
    if isinstance(nodes, dict) and hasattr(obj, "get_graph"):  # a LangGraph graph: its nodes' runnables
        out["nodes"] = {name: stable_form(getattr(node, "bound", node), depth - 1) for name, node in nodes.items()}
        try:
            out["graph"] = obj.get_graph().to_json()
        except Exception:  # noqa: BLE001 - a graph that cannot draw itself is identified by its nodes
            pass
    return out


def stable_form(obj: Any, depth: int = _DEPTH) -> Any:
    """JSON data that is equal for equal chains, across processes (LangChain's `to_json`, walked)."""
    if isinstance(obj, Serializable):
        form = obj.to_json()
        if form.get("type") == "not_implemented":
            return _unserialisable(obj, dict(form), depth)
        kwargs = form.get("kwargs")
        return {**form, "kwargs": stable_form(kwargs, depth)} if isinstance(kwargs, dict) else dict(form)
    if isinstance(obj, dict):
        return {str(k): stable_form(v, depth) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [stable_form(v, depth) for v in obj]
    if isinstance(obj, str):
        return _ADDRESS.sub("", obj)
    if isinstance(obj, (int, float, bool)) or obj is None:
        return obj
    return _unserialisable(obj, dict(to_json_not_implemented(obj)), depth)


def chain_form(chain: Runnable[Any, Any], kwargs: dict[str, Any], steps: Sequence[str]) -> Any:
    """What a checkpoint records about the chain: its serialisation, call kwargs and plan steps."""
    return {"runnable": stable_form(chain), "kwargs": stable_form(kwargs), "steps": list(steps)}


def input_key(value: Any) -> str:
    """sha256 of an input's stable serialisation."""
    return sha256(canonical(stable_form(value, depth=1)))


def first_difference(old: Any, new: Any, path: str = "chain") -> str | None:
    """`chain.runnable.kwargs.middle[0].kwargs.model_name: 'a' != 'b'`, or None when equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if key not in old or key not in new:
                return f"{path}.{key}: {'added' if key in new else 'removed'}"
            found = first_difference(old[key], new[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return f"{path}: {len(old)} items != {len(new)}"
        for i, (a, b) in enumerate(zip(old, new)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if old == new else f"{path}: {_short(old)} != {_short(new)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
