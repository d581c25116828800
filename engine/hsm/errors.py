"""How token failures reach the user.

Two classes, both naming the managed key and never carrying key material or a PKCS#11 traceback:
- the managed key's configuration cannot work (module not loadable, no such token/slot, PIN rejected or locked,
  key missing or of the wrong type, mechanism refused): 400, fixable by whoever writes `managed-keys/<name>`;
- the token failed while we used it (device error, lost sessions that could not be reopened, a signature that
  does not verify with the key's recorded public key): 503, worth retrying once the token is back.
"""
from __future__ import annotations

from plugin.framework import CodedError, UserError

TOKEN_UNAVAILABLE_STATUS = 503


class ManagedKeyConfigError(UserError):
    def __init__(self, key_name: str, problem: str) -> None:
        super().__init__(f'managed key "{key_name}": {problem}')
        self.key_name = key_name


class TokenUnavailableError(CodedError):
    def __init__(self, key_name: str, problem: str) -> None:
        super().__init__(TOKEN_UNAVAILABLE_STATUS, f'managed key "{key_name}": {problem}')
        self.key_name = key_name
