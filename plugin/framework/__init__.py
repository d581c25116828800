"""The declarative path framework (no grpc): a path = pattern + typed fields + handlers + help."""
from plugin.framework.backend import (
    Backend, Outcome, SecretType, SpecialPaths, forward_from_standby, is_performance_standby,
)
from plugin.framework.errors import (
    CodedError,
    InternalError,
    InvalidRequestError,
    PermissionDeniedError,
    ReadOnlyError,
    UnsupportedOperationError,
    UnsupportedPathError,
    UserError,
    VaultError,
)
from plugin.framework.fields import DisplayAttrs, Field, FieldData, FieldType, with_display
from plugin.framework.path import OperationSpec, Path, any_regex, name_regex
from plugin.framework.request import (
    Operation,
    Request,
    Response,
    Secret,
    StaticSystemView,
    SystemView,
    error_response,
    list_response,
    paginate,
    raw_response,
)

__all__ = [
    "Backend", "Outcome", "SecretType", "SpecialPaths", "CodedError", "InternalError", "InvalidRequestError",
    "PermissionDeniedError", "UnsupportedOperationError", "UnsupportedPathError", "UserError", "VaultError",
    "DisplayAttrs", "with_display", "Field", "FieldData", "FieldType", "OperationSpec", "Path", "any_regex", "name_regex", "Operation",
    "Request", "Response", "Secret", "StaticSystemView", "SystemView", "error_response", "list_response",
    "paginate", "raw_response", "ReadOnlyError", "forward_from_standby", "is_performance_standby",
]
