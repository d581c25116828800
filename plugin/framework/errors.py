"""The one place that decides how a failure reaches the user.

Handlers raise these; `plugin.framework.backend.Backend` turns them into either an error *response*
(the server answers 400 with the message, the usual Vault way to report bad input) or a protocol error
with a Vault error type (which the server maps to 404/405/403/500...). Anything else raised by a
handler is an internal error: logged with its traceback, answered with a generic 500 message.
"""
from __future__ import annotations

import enum


class ErrType(enum.IntEnum):
    """pb.ProtoError.err_type values (Vault's sdk/plugin/pb error kinds)."""

    UNKNOWN = 0
    USER_ERROR = 1          # note: the server answers 500 for this one, so we never send it
    INTERNAL = 2
    CODED = 3
    STATUS_BAD_REQUEST = 4
    UNSUPPORTED_OPERATION = 5
    UNSUPPORTED_PATH = 6
    INVALID_REQUEST = 7
    PERMISSION_DENIED = 8
    MULTI_AUTHZ_PENDING = 9
    UNRECOVERABLE = 10


class VaultError(Exception):
    """Base of every error a handler may raise on purpose."""

    err_type: ErrType = ErrType.INTERNAL
    status: int = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class UserError(VaultError):
    """Bad input: answered as an error response, i.e. HTTP 400 `{"errors": [message]}`."""

    err_type = ErrType.STATUS_BAD_REQUEST
    status = 400


class InvalidRequestError(VaultError):
    err_type = ErrType.INVALID_REQUEST
    status = 400

    def __init__(self, message: str = "invalid request") -> None:
        super().__init__(message)


class UnsupportedPathError(VaultError):
    err_type = ErrType.UNSUPPORTED_PATH
    status = 404

    def __init__(self, message: str = "unsupported path") -> None:
        super().__init__(message)


class UnsupportedOperationError(VaultError):
    err_type = ErrType.UNSUPPORTED_OPERATION
    status = 405

    def __init__(self, message: str = "unsupported operation") -> None:
        super().__init__(message)


class PermissionDeniedError(VaultError):
    err_type = ErrType.PERMISSION_DENIED
    status = 403

    def __init__(self, message: str = "permission denied") -> None:
        super().__init__(message)


class CodedError(VaultError):
    """An error with an explicit HTTP status (e.g. 404 for an unknown serial on a raw endpoint)."""

    err_type = ErrType.CODED

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class InternalError(VaultError):
    err_type = ErrType.INTERNAL
    status = 500


# The texts the server matches (sdk/logical/error.go ShouldForward) to replay a request on the active node: a
# standby's storage refuses writes with the first, and the second is the SDK's explicit "forward this".
READ_ONLY_TEXT = "cannot write to readonly storage"
FORWARD_TEXT = "please forward to the active node"


class ReadOnlyError(VaultError):
    """This node cannot do the work (a standby's read-only storage): the server forwards the request.

    Sent with the SDK's unknown error type, as the SDK sends its own ErrReadOnly; the server keeps the text."""

    err_type = ErrType.UNKNOWN
    status = 500

    def __init__(self, message: str = READ_ONLY_TEXT) -> None:
        super().__init__(message)


def _asks_forwarding(text: str) -> bool:
    return READ_ONLY_TEXT in text or FORWARD_TEXT in text


def forwarding_error(exc: BaseException) -> ReadOnlyError | None:
    """The read-only error inside `exc` (however a wrapper re-raised or grouped it), keeping its text, or None."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ReadOnlyError):
            return current
        text = current.message if isinstance(current, VaultError) else str(current)
        if _asks_forwarding(text):
            return ReadOnlyError(text)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
    return None


def forwarding_message(message: str) -> ReadOnlyError | None:
    """For an error *response* a handler built from a read-only failure: it must still reach the server as one."""
    return ReadOnlyError(message) if _asks_forwarding(message) else None


def to_vault_error(exc: BaseException) -> VaultError | None:
    """The error to send for `exc`: read-only text first, then the handler's own VaultError; None for unknown
    failures (the caller logs them and answers a generic internal error)."""
    return forwarding_error(exc) or (exc if isinstance(exc, VaultError) else None)


def is_user_facing(err: VaultError) -> bool:
    """Whether the error is answered as an error response (400 with the plain message)."""
    return isinstance(err, UserError)
