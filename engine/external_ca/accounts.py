"""`config/acme-account/:name` (create, read, update trusted_ca, list, delete) and `.../rotate-key`."""
from __future__ import annotations

import base64
import logging
import binascii
import datetime as dt
import re
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from engine.external_ca import acme_client, keys, order_index
from engine.external_ca.acme_client import AcmeFailed, RetryLater
from engine.external_ca.common import ACCOUNT_PREFIX, parse_rfc3339, rfc3339
from engine.external_ca.records import (
    CHALLENGE_STATES, AccountRecord, KeyVersion, account_key_path, load_account,
    load_role, save_account,
)
from engine.external_ca.runtime import Runtime
from engine.external_ca.transport import Reach
from engine.storage import Storage
from plugin.framework import (
    Field, FieldData, FieldType, Operation, Path, Request, Response, UserError, forward_from_standby, list_response,
    name_regex,
)

log = logging.getLogger("python-pki.external-ca")
_EMAIL_RE = re.compile(r"^(mailto:)?[^@\s,]+@[^@\s,]+$")


def account_data(rec: AccountRecord) -> dict[str, Any]:
    return {
        "name": rec.name,
        "directory_url": rec.directory_url,
        "email_contacts": list(rec.email_contacts),
        "trusted_ca": rec.trusted_ca,
        "active_key_version": rec.active_key_version,
        "account_keys": {k: {"key_type": v.key_type, "key_version": v.key_version,
                             "key_creation_date": v.key_creation_date} for k, v in rec.account_keys.items()},
        "key_type": rec.active_key.key_type,
        "key_max_age": rec.key_max_age,
        "creation_date": rec.creation_date,
        "last_updated_date": rec.last_updated_date,
    }


def validate_trusted_ca(pem: str) -> None:
    if not pem.strip():
        return
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise UserError("trusted_ca must be one or more PEM certificates") from None
    if not certs:
        raise UserError("trusted_ca must be one or more PEM certificates")


def validate_directory_url(url: str) -> None:
    if not re.match(r"^https?://[^\s/]+", url):
        raise UserError("directory_url must be an http(s) URL of an ACME directory")


def _require_admitted(reach: Reach, url: str) -> None:
    if not reach.policy.admits(url):
        raise UserError("directory_url names a host outside this mount's allowed_directory_hosts (config/network)")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Accounts:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def paths(self) -> list[Path]:
        name = name_regex("name")
        fields = {
            "name": Field(FieldType.STRING, "Name of the ACME account."),
            "directory_url": Field(FieldType.STRING, "ACME directory URL of the CA."),
            "email_contacts": Field(FieldType.COMMA_STRING_SLICE, "Contact e-mail addresses (at least one)."),
            "key_type": Field(FieldType.STRING, "Account key type.", default="ec-256",
                              allowed_values=keys.ACCOUNT_KEY_TYPES),
            "eab_kid": Field(FieldType.STRING, "External account binding key identifier."),
            "eab_key": Field(FieldType.STRING, "External account binding HMAC key (base64url)."),
            "trusted_ca": Field(FieldType.STRING, "PEM bundle trusted for the directory's TLS (default: system)."),
            "key_max_age": Field(FieldType.DURATION, "Rotate the account key automatically once it is older "
                                                     "than this (0: never)."),
        }
        rotate_fields = {
            "name": Field(FieldType.STRING),
            "key_type": Field(FieldType.STRING, "Type of the new key (default: the current key's type).",
                              allowed_values=keys.ACCOUNT_KEY_TYPES),
            "force": Field(FieldType.BOOL, "Rotate even when orders are waiting on challenges."),
        }
        import_fields = {
            "name": Field(FieldType.STRING),
            "account_key": Field(FieldType.STRING, "PEM private key of the already-registered account."),
            "directory_url": Field(FieldType.STRING, "ACME directory URL of the CA."),
            "account_url": Field(FieldType.STRING, "Account URL (the JWS kid) the key is expected to control; "
                                                   "optional, checked against the CA's answer when given."),
            "trusted_ca": fields["trusted_ca"],
            "key_max_age": fields["key_max_age"],
        }
        return [
            Path("config/acme-account/?$", {}, {Operation.LIST: self.list},
                 synopsis="List ACME accounts."),
            Path(f"config/acme-account/{name}/import", import_fields,
                 {Operation.UPDATE: self.import_account, Operation.CREATE: self.import_account},
                 forward_performance_standby=True,
                 synopsis="Import an account already registered at the CA (its key and directory)."),
            Path(f"config/acme-account/{name}/rotate-key", rotate_fields, {Operation.UPDATE: self.rotate},
                 forward_performance_standby=True, synopsis="Replace the account key (RFC 8555 key change)."),
            Path(f"config/acme-account/{name}", fields,
                 {Operation.UPDATE: self.write, Operation.CREATE: self.write, Operation.READ: self.read,
                  Operation.DELETE: self.delete},
                 exists=self.exists, synopsis="Manage an ACME account at an external CA."),
        ]

    async def exists(self, req: Request, d: FieldData) -> bool:
        return await load_account(req.storage, d.get("name")) is not None

    async def list(self, req: Request, d: FieldData) -> Response | None:
        names = [k for k in await req.storage.list(ACCOUNT_PREFIX) if not k.endswith("/")]
        return list_response(names) if names else None

    async def read(self, req: Request, d: FieldData) -> Response | None:
        rec = await load_account(req.storage, d.get("name"))
        return None if rec is None else Response(data=account_data(rec))

    async def write(self, req: Request, d: FieldData) -> Response:
        await forward_from_standby(req)   # creating registers at the CA
        name = d.get("name")
        async with self.rt.account_locks[name]:
            existing = await load_account(req.storage, name)
            if existing is not None:
                return await self._update(req, d, existing)
            return await self._create(req, d, name)

    async def _update(self, req: Request, d: FieldData, rec: AccountRecord) -> Response:
        # Terraform re-sends the immutable fields unchanged: only a real change is an error.
        url, has_url = d.get_ok("directory_url")
        if has_url and url != rec.directory_url:
            raise UserError("directory_url cannot be changed after the account is created")
        contacts, has_contacts = d.get_ok("email_contacts")
        if has_contacts and [c.removeprefix("mailto:") for c in contacts] != rec.email_contacts:
            raise UserError("email_contacts cannot be changed after the account is created")
        key_type, has_kt = d.get_ok("key_type")
        if has_kt and key_type != rec.active_key.key_type:
            raise UserError("key_type cannot be changed here; use config/acme-account/:name/rotate-key")
        kid, has_kid = d.get_ok("eab_kid")
        if has_kid and kid and kid != rec.eab_kid:
            raise UserError("eab_kid cannot be changed after the account is created")
        trusted, has_trusted = d.get_ok("trusted_ca")
        if has_trusted:
            validate_trusted_ca(trusted)
            rec.trusted_ca = trusted
        max_age, has_age = d.get_ok("key_max_age")
        if has_age:
            rec.key_max_age = max_age
        rec.last_updated_date = rfc3339(self.rt.now())
        self.rt.forget_account(rec.name)
        await save_account(req.storage, rec)
        return Response(data=account_data(rec))

    async def _create(self, req: Request, d: FieldData, name: str) -> Response:
        url = d.get("directory_url").strip()
        if not url:
            raise UserError("missing directory_url")
        validate_directory_url(url)
        contacts = [c.removeprefix("mailto:") for c in d.get("email_contacts")]
        if not contacts:
            raise UserError("missing email_contacts: at least one contact address is required")
        for c in contacts:
            if not _EMAIL_RE.match(c):
                raise UserError(f"invalid e-mail contact {c!r}")
        key_type = d.get("key_type")
        if key_type not in keys.ACCOUNT_KEY_TYPES:
            raise UserError(f"invalid key_type {key_type!r}: must be one of {', '.join(keys.ACCOUNT_KEY_TYPES)}")
        kid, hmac = d.get("eab_kid"), d.get("eab_key")
        if bool(kid) != bool(hmac):
            raise UserError("eab_kid and eab_key must be given together")
        if hmac:
            try:
                if not _b64url_decode(hmac):
                    raise ValueError
            except (binascii.Error, ValueError):
                raise UserError("eab_key must be base64url-encoded") from None
        trusted = d.get("trusted_ca")
        validate_trusted_ca(trusted)

        reach = await self.rt.reach(req.storage, trusted)
        _require_admitted(reach, url)
        key = await self.rt.blocking(keys.generate, key_type)
        try:
            account_url = await self.rt.blocking(acme_client.register, url, key, contacts, kid, hmac, reach)
        except (AcmeFailed, RetryLater) as exc:
            raise UserError(f"failed to register the account with the ACME server: {exc.message}") from None
        now = rfc3339(self.rt.now())
        rec = AccountRecord(
            name=name, directory_url=url, email_contacts=contacts, account_url=account_url,
            active_key_version=0, account_keys={"0": KeyVersion(key_type, 0, now)},
            creation_date=now, last_updated_date=now, trusted_ca=trusted, eab_kid=kid,
            key_max_age=d.get("key_max_age"))
        await req.storage.put(account_key_path(name, 0), keys.to_pem(key).encode(), seal_wrap=True)
        await save_account(req.storage, rec)
        return Response(data=account_data(rec))

    async def import_account(self, req: Request, d: FieldData) -> Response:
        name = d.get("name")
        url = d.get("directory_url").strip()
        if not url:
            raise UserError("missing directory_url")
        validate_directory_url(url)
        pem = d.get("account_key").strip()
        if not pem:
            raise UserError("missing account_key: the PEM private key of the ACME account")
        try:
            key = keys.from_pem(pem + "\n")
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # Never echo the submitted text: it is key material.
            raise UserError("account_key must be an unencrypted PEM EC or RSA private key") from None
        key_type = _key_type_of(key)
        if key_type not in keys.ACCOUNT_KEY_TYPES:
            raise UserError(f"account_key is {key_type}: must be one of {', '.join(keys.ACCOUNT_KEY_TYPES)}")
        expected_url = d.get("account_url").strip()
        trusted = d.get("trusted_ca")
        validate_trusted_ca(trusted)
        reach = await self.rt.reach(req.storage, trusted)
        _require_admitted(reach, url)
        async with self.rt.account_locks[name]:
            if await load_account(req.storage, name) is not None:
                raise UserError(f"ACME account {name!r} already exists; delete it first to import another")
            try:
                found = await self.rt.blocking(acme_client.existing_account, url, key, reach)
            except (AcmeFailed, RetryLater) as exc:
                raise UserError(f"could not look the account up at the ACME server: {exc.message}") from None
            if found is None:
                raise UserError("the ACME server knows no account for this account_key")
            if expected_url and found.url != expected_url:
                raise UserError(f"account_key controls account {found.url}, not {expected_url}")
            if found.status != "valid":
                raise UserError(f"the account at the ACME server is {found.status or 'in an unknown state'}, "
                                f"not valid")
            now = rfc3339(self.rt.now())
            rec = AccountRecord(
                name=name, directory_url=url, email_contacts=found.contacts, account_url=found.url,
                active_key_version=0, account_keys={"0": KeyVersion(key_type, 0, now)},
                creation_date=now, last_updated_date=now, trusted_ca=trusted, key_max_age=d.get("key_max_age"))
            # Re-encoded, so what is stored is exactly the parsed key (PKCS#8), whatever form it arrived in.
            await req.storage.put(account_key_path(name, 0), keys.to_pem(key).encode(), seal_wrap=True)
            await save_account(req.storage, rec)
            return Response(data=account_data(rec))

    async def delete(self, req: Request, d: FieldData) -> Response | None:
        await forward_from_standby(req)   # deactivates the account at the CA first
        name = d.get("name")
        async with self.rt.account_locks[name]:
            rec = await load_account(req.storage, name)
            if rec is None:
                return None
            users = await self._roles_using(req.storage, name)
            if users:
                raise UserError(f"ACME account {name!r} is used by roles: {', '.join(users)}")
            warnings: list[str] = []
            try:
                conn = await self.rt.conn(req.storage, rec)
                await self.rt.blocking(acme_client.deactivate, conn)
            except (AcmeFailed, RetryLater) as exc:
                warnings.append(f"could not deactivate the account at the ACME server: {exc.message}")
            self.rt.forget_account(name)
            for version in list(rec.account_keys) + ([str(rec.pending_key_version)]
                                                     if rec.pending_key_version is not None else []):
                await req.storage.delete(account_key_path(name, int(version)))
            await req.storage.delete(ACCOUNT_PREFIX + name)
            return Response(warnings=warnings) if warnings else None

    async def _roles_using(self, storage: Storage, account: str) -> list[str]:
        out = []
        for role_name in await storage.list("role/"):
            role = await load_role(storage, role_name)
            if role is not None and role.acme_account_name == account:
                out.append(role_name)
        return out

    async def _orders_waiting(self, storage: Storage, account: str) -> list[str]:
        await self.rt.index.ensure(storage)
        return [r.order_id for r in await order_index.all_active(storage)
                if r.account_name == account and r.status in CHALLENGE_STATES]

    async def rotate(self, req: Request, d: FieldData) -> Response:
        name = d.get("name")
        async with self.rt.account_locks[name]:
            rec = await load_account(req.storage, name)
            if rec is None:
                raise UserError(f"unknown ACME account {name!r}")
            key_type = d.get("key_type") or rec.active_key.key_type
            if key_type not in keys.ACCOUNT_KEY_TYPES:
                raise UserError(f"invalid key_type {key_type!r}: must be one of {', '.join(keys.ACCOUNT_KEY_TYPES)}")
            waiting = await self._orders_waiting(req.storage, name)
            if waiting and not d.get("force"):
                raise UserError(f"{len(waiting)} order(s) are waiting on challenges whose key authorizations use "
                                f"the current key; retry with force=true to rotate anyway")
            old = rec.active_key_version
            try:
                rec = await self.rotate_now(req.storage, rec, key_type)
            except (AcmeFailed, RetryLater) as exc:
                raise UserError(f"the ACME server refused the key change: {exc.message}") from None
            return Response(data={"name": name, "old_active_key_version": old,
                                  "new_active_key_version": rec.active_key_version, "key_type": key_type,
                                  "rotated_at": rec.active_key.key_creation_date})

    async def rotate_now(self, storage: Storage, rec: AccountRecord, key_type: str) -> AccountRecord:
        """Two account writes around the key change, so a crash in between is resolvable (see resolve_pending)."""
        rec = await self.resolve_pending(storage, rec)
        conn = await self.rt.conn(storage, rec)
        new_key = await self.rt.blocking(keys.generate, key_type)
        version = max(int(v) for v in rec.account_keys) + 1
        await storage.put(account_key_path(rec.name, version), keys.to_pem(new_key).encode(), seal_wrap=True)
        rec.pending_key_version = version
        await save_account(storage, rec)
        try:
            await self.rt.blocking(acme_client.key_change, conn, new_key)
        except AcmeFailed:
            rec.pending_key_version = None
            await save_account(storage, rec)
            await storage.delete(account_key_path(rec.name, version))
            raise
        return await self._commit_rotation(storage, rec, version, key_type)

    async def _commit_rotation(self, storage: Storage, rec: AccountRecord, version: int,
                               key_type: str) -> AccountRecord:
        old = rec.active_key_version
        now = rfc3339(self.rt.now())
        rec.account_keys[str(version)] = KeyVersion(key_type, version, now)
        rec.active_key_version = version
        rec.pending_key_version = None
        rec.last_updated_date = now
        self.rt.forget_account(rec.name)
        await save_account(storage, rec)
        # The CA no longer accepts the old key: keep its metadata, drop the material.
        await storage.delete(account_key_path(rec.name, old))
        return rec

    async def resolve_pending(self, storage: Storage, rec: AccountRecord) -> AccountRecord:
        """Finish or undo a key change interrupted between its two writes, by asking the CA which key it knows."""
        version = rec.pending_key_version
        if version is None:
            return rec
        new_key = await self.rt.load_account_key(storage, rec.name, version)
        found = await self.rt.blocking(acme_client.find_account, rec.directory_url, new_key,
                                       await self.rt.reach(storage, rec.trusted_ca))
        if found:
            key_type = _key_type_of(new_key)
            return await self._commit_rotation(storage, rec, version, key_type)
        rec.pending_key_version = None
        await save_account(storage, rec)
        await storage.delete(account_key_path(rec.name, version))
        return rec

    async def auto_rotate(self, storage: Storage) -> None:
        """Periodic: rotate keys older than the account's key_max_age, unless challenges are outstanding."""
        now = self.rt.now()
        for name in [k for k in await storage.list(ACCOUNT_PREFIX) if not k.endswith("/")]:
            async with self.rt.account_locks[name]:
                rec = await load_account(storage, name)
                if rec is None:
                    continue
                try:
                    if rec.pending_key_version is not None:
                        rec = await self.resolve_pending(storage, rec)
                    if rec.key_max_age <= 0:
                        continue
                    created = parse_rfc3339(rec.active_key.key_creation_date)
                    if created is None or created + dt.timedelta(seconds=rec.key_max_age) > now:
                        continue
                    if await self._orders_waiting(storage, name):
                        continue
                    await self.rotate_now(storage, rec, rec.active_key.key_type)
                except (AcmeFailed, RetryLater) as exc:
                    # Left for the next periodic run; the account keeps working with its current key.
                    log.warning(
                        "automatic key rotation of account %s failed: %s", name, exc.message)


def _key_type_of(key: keys.PrivateKey) -> str:
    if keys.private_key_type(key) == "EC":
        curve = key.curve.name  # type: ignore[union-attr]
        return {"secp256r1": "ec-256", "secp384r1": "ec-384", "secp521r1": "ec-521"}.get(curve, f"ec-{curve}")
    return f"rsa-{key.key_size}"
