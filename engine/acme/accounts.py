"""new-account (with EAB and onlyReturnExisting), account/:kid (update, deactivate) and key-change."""
from __future__ import annotations

import binascii
import json
import uuid
from typing import Any

from engine.acme.errors import AcmeProblem, problem
from engine.acme.jws import SignedRequest, b64d, check_public_key, thumbprint, verify_hmac
from engine.acme.protocol import Answer, Call, enforce_eab_for_existing
from engine.acme.records import Account, Eab, now, rfc3339


def account_answer(call: Call, acct: Account, status: int = 200) -> Answer:
    location = call.account_url(acct.kid)
    body: dict[str, Any] = {"status": acct.status, "orders": location + "/orders"}
    if acct.contact:
        body["contact"] = acct.contact
    return Answer(body=body, status=status, headers={"Location": [location]})


def _fields(payload: dict[str, Any]) -> tuple[list[str], bool, bool, str, dict[str, Any] | None]:
    contact = payload.get("contact", [])
    if contact is None:
        contact = []
    if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
        raise problem("malformed", prefix=f"invalid type ({type(contact).__name__}) for field 'contact'")
    tos = payload.get("termsOfServiceAgreed", False)
    if not isinstance(tos, bool):
        raise problem("malformed", prefix=f"invalid type ({type(tos).__name__}) for field 'termsOfServiceAgreed'")
    only = payload.get("onlyReturnExisting", False)
    if not isinstance(only, bool):
        raise problem("malformed", prefix=f"invalid type ({type(only).__name__}) for field 'onlyReturnExisting'")
    status = payload.get("status", "")
    if not isinstance(status, str):
        raise problem("malformed", prefix=f"invalid type ({type(status).__name__}) for field 'status'")
    eab = payload.get("externalAccountBinding")
    if eab is not None and not isinstance(eab, dict):
        raise problem("malformed", suffix="externalAccountBinding field was unparseable")
    return contact, tos, only, status, eab or None


async def _by_key(call: Call) -> Account | None:
    kid = await call.store.kid_for_thumbprint(call.thumbprint)
    if not kid:
        return None
    acct = await call.store.account(kid)
    # A thumbprint written by a creation that died before its account: as if absent (retrying heals it).
    if acct is None or acct.acme_directory != call.directory.directory:
        return None
    return acct


async def _search(call: Call) -> Answer:
    acct = await _by_key(call)
    if acct is None:
        raise AcmeProblem("accountDoesNotExist", prefix="An account with this key does not exist")
    enforce_eab_for_existing(call.directory.cfg, acct)
    return account_answer(call, acct)


async def _verify_eab(call: Call, binding: dict[str, Any]) -> Eab:
    inner = SignedRequest.from_data(binding)
    header = inner.header
    if not header.get("kid"):
        raise problem("malformed", prefix="failed to json unmarshal eab 'protected': invalid header: got missing "
                                          "required field 'kid'")
    if header.get("alg") not in ("HS256", "HS384", "HS512"):
        raise problem("malformed", prefix="failed to json unmarshal eab 'protected': invalid header: unexpected "
                                          "value for 'algo'")
    if not header.get("url"):
        raise problem("malformed", prefix="missing required parameter 'url' in eab 'protected'")
    expected = call.directory.request_url(call.req.path)
    if header["url"] != expected:
        raise problem("unauthorized", prefix=f"invalid value for 'url' in eab 'protected': got '{header['url']}' "
                                             f"expected '{expected}'")
    if header.get("nonce"):
        raise problem("malformed", prefix="nonce should not be provided in eab 'protected'")
    inner.check_parts()
    eab = await call.store.eab(str(header["kid"]))
    if eab is None:
        raise problem("unauthorized", suffix="failed to verify eab")
    try:
        key = b64d(eab.key)
        signature = b64d(inner.signature_b64)
        payload = b64d(inner.payload_b64)
    except (ValueError, binascii.Error):
        raise problem("malformed", prefix="error parsing eab signature") from None
    signing_input = f"{inner.protected_b64}.{inner.payload_b64}".encode()
    if not verify_hmac(header["alg"], key, signing_input, signature):
        raise problem("unauthorized", suffix="failed to verify eab")
    try:
        bound = json.loads(payload)
    except ValueError:
        bound = None
    if bound != call.jwk:
        raise problem("malformed", prefix="eab payload does not match outer JWK key")
    if eab.acme_directory != call.directory.directory:
        raise problem("unauthorized", suffix="failed to verify eab")
    return eab


async def new_account(call: Call) -> Answer:
    payload = call.payload or {}
    contact, tos, only_existing, _, binding = _fields(payload)
    if only_existing:
        return await _search(call)
    if call.account is not None:
        raise problem("malformed", prefix="cannot submit to newAccount with 'kid'")
    existing = await _by_key(call)
    if existing is not None:
        enforce_eab_for_existing(call.directory.cfg, existing)
        return account_answer(call, existing)
    eab = await _verify_eab(call, binding) if binding else None
    if eab is None and call.directory.eab_required():
        raise AcmeProblem("externalAccountRequired")
    if eab is not None:
        # Consumed before the account exists: a failure after this point costs the client a new EAB key, never a
        # second account on one key.
        if not await call.store.delete_eab(eab.id):
            raise problem("unauthorized", prefix="eab was already used")
    acct = Account(kid=str(uuid.uuid4()), status="valid", jwk=call.jwk, thumbprint=call.thumbprint,
                   acme_directory=call.directory.directory, contact=contact, terms_of_service_agreed=tos,
                   created=rfc3339(now()), eab_id=eab.id if eab else "",
                   eab_directory=eab.acme_directory if eab else "")
    # The thumbprint first: an account is only ever found through it, so a crash in between leaves nothing usable.
    await call.store.put_thumbprint(acct.thumbprint, acct.kid)
    await call.store.put_account(acct)
    answer = account_answer(call, acct, status=201)
    if eab is not None and isinstance(answer.body, dict):
        answer.body["externalAccountBinding"] = binding
    return answer


async def update_account(call: Call) -> Answer:
    payload = call.payload or {}
    contact, _, only_existing, status, binding = _fields(payload)
    if only_existing:
        return await _search(call)
    acct = call.account
    if acct is None:
        raise problem("malformed", prefix="cannot submit to account updates without a 'kid'")
    if call.d.get("kid") and call.d.get("kid") != acct.kid:
        # Beyond the built-in, which updates the signer's account whatever the URL says.
        raise problem("unauthorized", prefix="the account URL is not the signer's account")
    if binding:
        raise problem("malformed", suffix="not allowed to update EAB data in accounts")
    if acct.status != "valid":
        raise AcmeProblem("unauthorized")
    changed = False
    if "contact" in payload and sorted(contact) != sorted(acct.contact):
        acct.contact, changed = contact, True
    if status == "deactivated":
        acct.status, acct.revoked_on, changed = "deactivated", rfc3339(now()), True
    elif status:
        raise problem("malformed", prefix=f"invalid account status {status!r}")
    if changed:
        await call.store.put_account(acct)
    return account_answer(call, acct)


async def key_change(call: Call) -> Answer:
    """RFC 8555 section 7.3.5 (beyond the built-in, which lists keyChange but has no handler)."""
    acct = call.account
    assert acct is not None
    if not isinstance(call.payload, dict):
        raise problem("malformed", prefix="key-change needs an inner JWS")
    inner = SignedRequest.from_data(call.payload)
    header = inner.header
    if header.get("kid") or not header.get("jwk"):
        raise problem("malformed", prefix="the inner JWS must carry the new key as 'jwk'")
    if header.get("url") != (call.jws.header.get("url") if call.jws else None):
        raise problem("malformed", prefix="inner and outer 'url' differ")
    if header.get("nonce"):
        raise problem("malformed", prefix="the inner JWS must not carry a nonce")
    new_jwk = check_public_key(header["jwk"])
    body = inner.verify(new_jwk) or {}
    if body.get("account") != call.account_url(acct.kid):
        raise problem("malformed", prefix="'account' does not name the signer's account")
    old = body.get("oldKey")
    if not isinstance(old, dict) or thumbprint(check_public_key(old)) != acct.thumbprint:
        raise problem("malformed", prefix="'oldKey' is not the account's key")
    new_thumb = thumbprint(new_jwk)
    holder = await call.store.kid_for_thumbprint(new_thumb)
    if holder and holder != acct.kid and await call.store.account(holder) is not None:
        answer = Answer(body=problem("malformed", prefix="the new key already belongs to an account").body(),
                        status=409, content_type="application/problem+json",
                        headers={"Location": [call.account_url(holder)]})
        return answer
    old_thumb = acct.thumbprint
    # New thumbprint, then the account, then the old thumbprint: at every point exactly one key finds it.
    await call.store.put_thumbprint(new_thumb, acct.kid)
    acct.jwk, acct.thumbprint = new_jwk, new_thumb
    await call.store.put_account(acct)
    await call.store.storage.delete("acme/account-thumbprints/" + old_thumb)
    return account_answer(call, acct)
