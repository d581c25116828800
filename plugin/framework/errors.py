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


def is_user_facing(err: VaultError) -> bool:
    """Whether the error is answered as an error response (400 with the plain message)."""
    return isinstance(err, UserError)
