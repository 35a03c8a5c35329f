"""What the client scripts of tests/clients/ share: environment inputs, named checks, the JSON
line of each case, the verification of issued v1 access tokens with PyJWT against the
emulator's JWKS, and azure-identity's cached second acquisition.

The scripts run as `python tests/clients/<script>.py`, so this directory is first on sys.path
and `import common` finds this module. Messages name the running script (sys.argv[0]).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import traceback

import jwt
import requests
from azure.core.pipeline.transport import RequestsTransport

HTTP_TIMEOUT = 30
SCRIPT = os.path.basename(sys.argv[0])


class CheckFailed(Exception):
    pass


def env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"{SCRIPT}: environment variable {name} is not set")
    return value


def check(checks: dict, name: str, ok: bool, detail: str) -> None:
    checks[name] = bool(ok)
    if not ok:
        raise CheckFailed(f"{name}: {detail}")


def jwt_part(token: str, index: int) -> dict:
    seg = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def print_versions(modules: dict) -> None:
    """The `{"versions": …}` line: Python's, then each module's `__version__` under its name."""
    versions = {"python": sys.version.split()[0]}
    versions.update({name: module.__version__ for name, module in modules.items()})
    print(json.dumps({"versions": versions}), flush=True)


class Jwks:
    """A tenant's signing keys, as the emulator publishes them."""

    def __init__(self, https_url: str, tenant: str, require_keys: bool = True):
        self.tenant = tenant
        self.url = f"{https_url}/{tenant}/discovery/v2.0/keys"
        # verify=True: requests then uses REQUESTS_CA_BUNDLE (the emulator's CA).
        resp = requests.get(self.url, timeout=HTTP_TIMEOUT)
        resp.raise_for_status()
        self.keys = {k["kid"]: k for k in resp.json()["keys"]}
        if require_keys and not self.keys:
            raise SystemExit(f"{SCRIPT}: {self.url} lists no keys")

    def decode_v1(self, token: str, header: dict, checks: dict, audience, prefix: str = "",
                  kid_detail: str = "", claims_on_error: bool = True) -> dict:
        """Checks `{prefix}kid_in_jwks` and `{prefix}signature_aud_iss_exp` (RS256 signature with
        the key the header's kid names, aud, the v1 issuer of the tenant, exp/iat/nbf with 60 s
        leeway) and returns the claims."""
        kid = header.get("kid")
        check(checks, f"{prefix}kid_in_jwks", kid in self.keys,
              f"kid {kid!r} not in {sorted(self.keys)}{kid_detail}")
        name = f"{prefix}signature_aud_iss_exp"
        try:
            claims = jwt.decode(
                token,
                key=jwt.PyJWK(self.keys[kid], algorithm="RS256"),
                algorithms=["RS256"],
                audience=audience,
                issuer=f"https://sts.windows.net/{self.tenant}/",
                options={"verify_aud": True, "require": ["exp", "iat", "nbf", "iss", "aud"]},
                leeway=60,
            )
            checks[name] = True
        except jwt.PyJWTError as e:
            checks[name] = False
            detail = f"{name}: {type(e).__name__}: {e}"
            if claims_on_error:
                detail += f"; claims {jwt_part(token, 1)}"
            raise CheckFailed(detail)
        return claims


class CountingTransport(RequestsTransport):
    """azure-core's own requests transport, counting the token requests it sends: the `method`
    requests to a URL that contains one of `url_parts`."""

    def __init__(self, method: str, url_parts: tuple, **kwargs):
        super().__init__(**kwargs)
        self.method = method
        self.url_parts = url_parts
        self.token_requests = 0

    def send(self, request, **kwargs):
        if request.method == self.method and any(p in request.url for p in self.url_parts):
            self.token_requests += 1
        return super().send(request, **kwargs)


def get_token_twice(cred, transport: CountingTransport, scope: str, out: dict, check_first,
                    requests_what: str) -> None:
    """Two get_token calls of an azure-identity credential (closed afterwards): `check_first`
    checks the first token; the second must be the same, from the credential's cache, so that
    the transport counted one token request (`requests_what`) in all."""
    checks = out["checks"]
    try:
        first = cred.get_token(scope)
        check_first(first)
        second = cred.get_token(scope)
        check(checks, "cached_token_same", second.token == first.token,
              "the second get_token returned another token")
    finally:
        out["token_requests"] = transport.token_requests
        cred.close()
    check(checks, "one_token_request", transport.token_requests == 1,
          f"{transport.token_requests} {requests_what} for two get_token calls")


def run_case(out: dict, run) -> str | None:
    """Runs one case into `out` (its JSON line, printed afterwards); returns why it failed."""
    failure = None
    try:
        run(out)
        out["ok"] = True
    except CheckFailed as e:
        out["error"] = str(e)
        failure = str(e)
    except Exception as e:  # a library raised: report it as this case's failure
        out["error"] = f"{type(e).__name__}: {e}"
        failure = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    print(json.dumps(out), flush=True)
    return failure


def run_cases(cases, **fields) -> int:
    """Runs every `(name, run)` case, each with the JSON line
    `{"case": name, "ok": …, **fields, "checks": {…}}`; exit status 1 if any failed."""
    failures = []
    for name, run in cases:
        out = {"case": name, "ok": False, **fields, "checks": {}}
        failure = run_case(out, run)
        if failure is not None:
            failures.append(f"{name}: {failure}")
    if failures:
        print(f"{SCRIPT}: FAILED\n" + "\n".join(failures), file=sys.stderr)
        return 1
    print(f"{SCRIPT}: all {len(cases)} cases passed", file=sys.stderr)
    return 0
