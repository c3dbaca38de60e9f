"""Bad input to an adapter: aaflow's precise errors, typed like the errors stock frameworks raise.

A drop-in backend must not change what a caller's `except` clause catches. Each class here is
an `InputError` (it names the offending item) and also the built-in exception type the stock
framework raises for the same mistake, so code written against LangChain or LlamaIndex keeps
catching it.
"""
from __future__ import annotations

from collections.abc import Sequence

from aaflow_core.errors import AAFlowError, ConfigError, InputError


class UnsupportedRunnableError(InputError, TypeError, ValueError):
    """Not a Runnable, nor something LCEL coerces to one (stock: TypeError from `coerce_to_runnable`,
    pydantic's ValueError from `RunnableBinding(bound=...)`)."""


class NotADocumentError(InputError, AttributeError):
    """An input is not a document or node (stock: AttributeError when the first step reads it)."""


class DocumentFieldError(InputError, TypeError, ValueError):
    """A document's text or metadata has the wrong type (stock: TypeError from the splitter,
    or pydantic's ValueError when the chunk Document is built)."""


class StepOutputError(InputError, TypeError, ValueError, AttributeError):
    """A step returned the wrong number or kind of outputs (stock: ValueError for a batch of the wrong
    length, TypeError for a non-list, AttributeError when the next step meets a non-node)."""


class EmbeddingOutputError(InputError, ValueError):
    """An embedding model returned the wrong number of vectors, ragged vectors or non-numbers."""


class EmbeddingDimError(EmbeddingOutputError, AssertionError):
    """Vectors whose size differs from the others' or the index's (stock: faiss's bare AssertionError)."""


class DuplicateIdError(InputError, ValueError):
    """Ids that repeat, or are already in the store (stock: ValueError, some of it after a write)."""


class UnknownOptionError(ConfigError, TypeError):
    """A keyword argument the adapter does not take, e.g. a misspelt option (Python: TypeError)."""

    def __init__(self, where: str, name: str, value: object, accepted: Sequence[str]) -> None:
        super().__init__(name, value, f"{where} takes no argument {name!r}; accepted: {', '.join(accepted)}")


def user_error(err: AAFlowError) -> BaseException:
    """What to raise to the user: the user's own exception (the type stock would raise) out of
    aaflow's wrappers, with aaflow's context as a note; aaflow's precise input errors as they are."""
    root: BaseException = err
    while (isinstance(root, AAFlowError) and not isinstance(root, InputError)
           and isinstance(root.__cause__, BaseException)):
        root = root.__cause__
    if root is not err:
        root.add_note(f"aaflow: {err}")
    return root


def a_type(value: object) -> str:
    """'None', 'a str', 'an int': what a value is, for messages."""
    if value is None:
        return "None"
    kind = type(value).__name__
    return f"{'an' if kind[0].lower() in 'aeiou' else 'a'} {kind}"


def name_items(names: Sequence[str], limit: int = 3) -> str:
    """'a, b, c and 4 more': a short list of the items a message is about."""
    head = ", ".join(names[:limit])
    return head + (f" and {len(names) - limit} more" if len(names) > limit else "")
