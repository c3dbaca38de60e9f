"""The exception the openai client would have raised for a failed call.

Adapters that must raise what stock raises (an `openai.AuthenticationError` for a refused key,
`openai.APIConnectionError` for a dead endpoint) turn the remote client's `RemoteCallError`
into that exception here, keeping aaflow's error (which names the item) as its cause.
"""
from __future__ import annotations

import httpx
import openai

from aaflow_core.errors import EndpointError, MalformedResponseError, RemoteCallError

STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
    404: openai.NotFoundError, 409: openai.ConflictError, 422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def openai_error(err: RemoteCallError) -> Exception:
    """`err` as the openai exception class stock raises for the same answer (or lack of one)."""
    cause = err.__cause__
    if isinstance(cause, MalformedResponseError):
        return openai.APIError(str(cause), httpx.Request("POST", "http://unknown"), body=None)
    if not isinstance(cause, EndpointError):
        return err
    request = httpx.Request("POST", cause.url or "http://unknown")
    if cause.status is None:
        return openai.APITimeoutError(request) if cause.timed_out else openai.APIConnectionError(
            message=cause.message, request=request)
    cls = STATUS_ERRORS.get(cause.status, openai.InternalServerError if cause.status >= 500 else openai.APIStatusError)
    body = cause.body.get("error", cause.body) if isinstance(cause.body, dict) else cause.body
    return cls(cause.message, response=httpx.Response(cause.status, request=request), body=body)
