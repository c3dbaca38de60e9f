"""One error tree for aaflow: every error names the item, operator or rank it is about."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SkippedItem:
    """An input that was left out rather than failing the run (a bad file, an empty folder), and why.

    Discovery and loading report them; the run's result and manifest list every one.
    """

    item: str
    reason: str


class AAFlowError(Exception):
    """Base of every error aaflow raises on purpose."""


class ConfigError(AAFlowError, ValueError):
    """A configuration value is invalid; raised once, at the edge, before any work starts."""

    def __init__(self, field: str, value: object, why: str) -> None:
        super().__init__(f"invalid {field}={value!r}: {why}")
        self.field = field
        self.value = value


class InputError(AAFlowError):
    """One input item (file, document, node) cannot be processed."""

    def __init__(self, item: str, why: str) -> None:
        super().__init__(f"{item}: {why}")
        self.item = item
        self.why = why


class NoInputError(AAFlowError):
    """Nothing usable was found in what the user pointed at."""


class OperatorError(AAFlowError):
    """An operator failed on a batch; carries the operator name and the first item of the batch."""

    def __init__(self, operator: str, item: str | None, cause: BaseException) -> None:
        where = f" on {item}" if item is not None else ""
        super().__init__(f"operator {operator!r} failed{where}: {type(cause).__name__}: {cause}")
        self.operator = operator
        self.item = item
        self.__cause__ = cause


class IndexDirError(AAFlowError):
    """An index directory is missing, not an aaflow index, or would be overwritten."""


class RemoteCallError(AAFlowError):
    """A remote request failed after its last retry; names the item it was for."""

    def __init__(self, item: str, attempts: int, cause: BaseException) -> None:
        super().__init__(f"{item}: failed after {attempts} attempt(s): {type(cause).__name__}: {cause}")
        self.item = item
        self.attempts = attempts
        self.__cause__ = cause


class MalformedResponseError(AAFlowError):
    """An endpoint answered 200 with a body that is not what was asked for; transient, so retried."""

    retryable = True


class RankError(AAFlowError):
    """A rank of an MPI job failed; the whole job ends with this, naming the rank (and its host
    when the job spans several hosts)."""

    host: str | None = None

    def __init__(self, rank: int, why: str, host: str | None = None) -> None:
        super().__init__(f"rank {rank}{f' on {host}' if host else ''} failed: {why}")
        self.rank = rank
        self.host = host


class SharedPathError(AAFlowError):
    """A path every rank of a multi-host job must see is missing (or different) on some host."""


class MissingDependencyError(AAFlowError, ImportError):
    """An optional dependency is not installed; the message says what to install."""

    def __init__(self, module: str, install: str) -> None:
        super().__init__(f"{module} is required for this feature: pip install {install}")


class EndpointError(AAFlowError):
    """An endpoint answered an HTTP error (or no answer at all: `status` None); `retryable` says if
    trying again can help (429, 5xx, timeouts, resets) or not (400, 401, 404: fix the request)."""

    def __init__(self, status: int | None, message: str, *, retryable: bool, retry_after_s: float | None = None,
                 url: str | None = None, body: object = None, timed_out: bool = False) -> None:
        super().__init__(f"HTTP {status}: {message}" if status is not None else message)
        self.status = status
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after_s
        self.url = url
        self.body = body  # the parsed error body, when the server sent JSON
        self.timed_out = timed_out


class CheckpointError(AAFlowError):
    """A checkpoint directory cannot be resumed: made for another job, damaged, or in use; names what."""
