"""config/network: where this mount's ACME accounts may point (allowed_directory_hosts)."""
from __future__ import annotations

from typing import Any

from engine.external_ca.runtime import Runtime
from engine.external_ca.transport import HostPolicy, validate_host_entry
from engine.storage import Storage, get_json, put_json
from plugin.framework import Field, FieldData, FieldType, Operation, Path, Request, Response, UserError

NETWORK_KEY = "config/network"

HELP = """Optional network policy of the mount's ACME accounts.

allowed_directory_hosts lists the hosts an account's directory_url, and every URL the CA hands out after it
(nonces, orders, certificates, redirects), may name: exact host names or IP addresses, "*.example.com" for any
subdomain, or either with ":port" to pin the port. Empty (the default) admits every host. Requests to any other
host are refused before a connection is made."""


async def load_policy(storage: Storage) -> HostPolicy:
    raw = await get_json(storage, NETWORK_KEY) or {}
    return HostPolicy(tuple(raw.get("allowed_directory_hosts") or ()))


class Network:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def paths(self) -> list[Path]:
        fields = {"allowed_directory_hosts": Field(FieldType.COMMA_STRING_SLICE,
                                                   "Hosts ACME accounts may reach; empty admits all.")}
        return [Path("config/network", fields, {Operation.READ: self.read, Operation.UPDATE: self.write},
                     synopsis="Where the mount's ACME accounts may point.", description=HELP)]

    async def read(self, req: Request, d: FieldData) -> Response:
        return Response(data=_data(await load_policy(req.storage)))

    async def write(self, req: Request, d: FieldData) -> Response:
        hosts, supplied = d.get_ok("allowed_directory_hosts")
        if not supplied:
            return Response(data=_data(await load_policy(req.storage)))
        entries = [h.strip().lower() for h in hosts]
        for entry in entries:
            why = validate_host_entry(entry)
            if why:
                raise UserError(f"invalid allowed_directory_hosts entry: {why}")
        await put_json(req.storage, NETWORK_KEY, {"allowed_directory_hosts": entries})
        self.rt.forget_all_connections()
        return Response(data=_data(HostPolicy(tuple(entries))))


def _data(policy: HostPolicy) -> dict[str, Any]:
    return {"allowed_directory_hosts": list(policy.allowed)}
