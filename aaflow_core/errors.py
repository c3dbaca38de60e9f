"""One error tree for aaflow: every error names the item, operator or rank it is about."""
from __future__ import annotations


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
    """A rank of an MPI job failed; the whole job ends with this, naming the rank."""

    def __init__(self, rank: int, why: str) -> None:
        super().__init__(f"rank {rank} failed: {why}")
        self.rank = rank


class MissingDependencyError(AAFlowError, ImportError):
    """An optional dependency is not installed; the message says what to install."""

    def __init__(self, module: str, install: str) -> None:
        super().__init__(f"{module} is required for this feature: pip install {install}")


class CheckpointError(AAFlowError):
    """A checkpoint directory cannot be resumed: made for another job, damaged, or in use; names what."""
