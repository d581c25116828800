"""A path is data: a regex pattern with named parts, typed fields, a handler per operation, help."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping

from plugin.framework.fields import DisplayAttrs, Field, FieldData
from plugin.framework.request import Operation, Request, Response

Handler = Callable[[Request, FieldData], Awaitable[Response | None]]
ExistenceCheck = Callable[[Request, FieldData], Awaitable[bool]]


def name_regex(name: str) -> str:
    """A named capture for issuer/key/role names (word characters, dots and dashes inside)."""
    return rf"(?P<{name}>\w(([\w.-]+)?\w)?)"


def any_regex(name: str) -> str:
    return rf"(?P<{name}>.+)"


def opt_trailing_slash() -> str:
    return "/?"


@dataclass
class OperationSpec:
    handler: Handler
    summary: str = ""
    description: str = ""
    display: DisplayAttrs | None = None     # operationId hints for this operation (see Path.display)


@dataclass
class Path:
    pattern: str
    fields: Mapping[str, Field] = field(default_factory=dict)
    operations: Mapping[Operation, Handler | OperationSpec] = field(default_factory=dict)
    exists: ExistenceCheck | None = None
    synopsis: str = ""
    description: str = ""
    # For paths whose POST body is not a JSON field map (e.g. OCSP DER): skip unknown-field warnings.
    takes_raw_body: bool = False
    # Work that is not one storage write (background tasks, network I/O, several writes): a performance standby
    # answers it up front with the read-only error, so the server replays it on the active before anything runs.
    forward_performance_standby: bool = False
    # OpenAPI: operationId hints (operation_prefix/verb/suffix, as in Vault; a `|`-separated suffix names each
    # path the pattern expands to), per-operation overrides, and the documented response codes of operations
    # that do not answer 200 (204 for delete) with their descriptions.
    display: DisplayAttrs | None = None
    operation_display: Mapping[Operation, DisplayAttrs] = field(default_factory=dict)
    responses: Mapping[Operation, Mapping[int, str]] = field(default_factory=dict)
    regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pattern = self.pattern
        if not pattern.startswith("^"):
            pattern = "^" + pattern
        if not pattern.endswith("$"):
            pattern = pattern + "$"
        # As Go's regexp: \w, \d and \s are ASCII only (the router uses fullmatch, so $ cannot match before
        # a final newline as Python's does).
        self.regex = re.compile(pattern, re.ASCII)

    def handler_for(self, op: Operation) -> Handler | None:
        spec = self.operations.get(op)
        if spec is None and op is Operation.CREATE:
            # Without an existence check the server never sends create; if it does, update handles it.
            spec = self.operations.get(Operation.UPDATE)
        if spec is None:
            return None
        return spec.handler if isinstance(spec, OperationSpec) else spec

    def display_for(self, op: Operation) -> DisplayAttrs | None:
        spec = self.operations.get(op)
        if isinstance(spec, OperationSpec) and spec.display is not None:
            return spec.display
        return self.operation_display.get(op)

    def summary_for(self, op: Operation) -> str:
        spec = self.operations.get(op)
        return spec.summary if isinstance(spec, OperationSpec) and spec.summary else self.synopsis
