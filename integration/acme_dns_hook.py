"""dns-01 hook run by the ACME clients themselves: writes the TXT record into pebble-challtestsrv.

certbot (`--manual-auth-hook "python acme_dns_hook.py certbot-auth"`) passes the name and value in CERTBOT_DOMAIN
and CERTBOT_VALIDATION; lego's exec provider runs `acme_dns_hook.py lego present|cleanup <fqdn> <value>`.
CHALLTESTSRV_URL is the management API. Standard library only: it runs outside the test process.
"""
from __future__ import annotations

import json
import os
import sys
import urllib.request


def _post(path: str, body: dict[str, str]) -> None:
    base = os.environ["CHALLTESTSRV_URL"]
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(req, timeout=10).read()


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def main(argv: list[str]) -> int:
    if argv[:1] == ["certbot-auth"]:
        # A wildcard and its base name share one TXT name: challtestsrv's set-txt adds a value to the set.
        host = _fqdn("_acme-challenge." + os.environ["CERTBOT_DOMAIN"].removeprefix("*."))
        _post("/set-txt", {"host": host, "value": os.environ["CERTBOT_VALIDATION"]})
    elif argv[:1] == ["certbot-cleanup"]:
        _post("/clear-txt", {"host": _fqdn("_acme-challenge." + os.environ["CERTBOT_DOMAIN"].removeprefix("*."))})
    elif argv[:2] == ["lego", "present"]:
        _post("/set-txt", {"host": _fqdn(argv[2]), "value": argv[3]})
    elif argv[:2] == ["lego", "cleanup"]:
        _post("/clear-txt", {"host": _fqdn(argv[2])})
    else:
        print(f"usage: {sys.argv[0]} certbot-auth|certbot-cleanup|lego present|cleanup FQDN VALUE", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
