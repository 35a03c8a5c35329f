#!/usr/bin/env python3
"""App-only tokens from the emulator with the real, unmodified MSAL Python and azure-identity.

Run by emulator/tests/clients.rs (through scripts/test.sh, which installs the pinned
libraries of tests/clients/requirements.txt). Inputs, all from the environment:

  M365EMU_HTTPS_URL        emulator HTTPS base URL, e.g. https://127.0.0.1:41234
  M365EMU_TENANT_ID        tenant GUID
  M365EMU_CLIENT_ID        application (client) id
  M365EMU_CLIENT_SECRET    a valid client secret
  M365EMU_CERT_PEM_PATH    the certificate alone (PEM)
  M365EMU_KEY_PEM_PATH     its private key (PEM)
  M365EMU_CERT_COMBINED_PATH  certificate + key in one PEM (azure-identity)
  M365EMU_THUMBPRINT_SHA1  SHA-1 thumbprint of the certificate, hex
  REQUESTS_CA_BUNDLE       the emulator's CA certificate

Cases:
  secret             MSAL, client_credential=<secret>                       -> appidacr "1"
  thumbprint         MSAL, {"private_key", "thumbprint"} (RS256 + x5t)        -> appidacr "2"
  public_certificate MSAL, {"private_key", "public_certificate"}
                     (PS256 + x5t#S256 + x5c, MSAL >= 1.29)                 -> appidacr "2"
  azure_identity     azure-identity CertificateCredential (RS256 + x5t)       -> appidacr "2"

Each case acquires twice; the second acquisition must come from the client's cache. One JSON
line per case goes to stdout, with `token_requests`: how many token requests the client says
it sent (MSAL's token_source; for azure-identity, POSTs counted at its HTTP transport).
Exit status 1, with the reasons on stderr, if any check fails.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import traceback

import azure.identity
import jwt
import msal
import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import CertificateCredential

RESOURCE = "https://manage.office.com"
SCOPES = [f"{RESOURCE}/.default"]
ROLE = "ActivityFeed.Read"
HTTP_TIMEOUT = 30


class CheckFailed(Exception):
    pass


def env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"msal_app_only.py: environment variable {name} is not set")
    return value


def check(checks: dict, name: str, ok: bool, detail: str) -> None:
    checks[name] = bool(ok)
    if not ok:
        raise CheckFailed(f"{name}: {detail}")


def jwt_part(token: str, index: int) -> dict:
    seg = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


class Verifier:
    """Checks an access token against the emulator's JWKS and Entra's v1 app-only claims."""

    def __init__(self, https_url: str, tenant: str, client_id: str):
        self.tenant = tenant
        self.client_id = client_id
        self.jwks_url = f"{https_url}/{tenant}/discovery/v2.0/keys"
        # verify=True: requests then uses REQUESTS_CA_BUNDLE (the emulator's CA).
        resp = requests.get(self.jwks_url, timeout=HTTP_TIMEOUT)
        resp.raise_for_status()
        self.keys = {k["kid"]: k for k in resp.json()["keys"]}
        if not self.keys:
            raise SystemExit(f"msal_app_only.py: {self.jwks_url} lists no keys")

    def verify(self, token: str, appidacr: str, checks: dict) -> dict:
        header = jwt.get_unverified_header(token)
        check(checks, "header_alg_rs256", header.get("alg") == "RS256", f"alg {header.get('alg')!r}")
        kid = header.get("kid")
        check(checks, "kid_in_jwks", kid in self.keys, f"kid {kid!r} not in {sorted(self.keys)} ({self.jwks_url})")
        key = jwt.PyJWK(self.keys[kid], algorithm="RS256")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=["RS256"],
                audience=RESOURCE,
                issuer=f"https://sts.windows.net/{self.tenant}/",
                options={"verify_aud": True, "require": ["exp", "iat", "nbf", "iss", "aud"]},
                leeway=60,
            )
            checks["signature_aud_iss_exp"] = True
        except jwt.PyJWTError as e:
            checks["signature_aud_iss_exp"] = False
            raise CheckFailed(f"signature_aud_iss_exp: {type(e).__name__}: {e}; claims {jwt_part(token, 1)}")
        check(checks, "tid", claims.get("tid") == self.tenant, f"tid {claims.get('tid')!r}")
        check(checks, "appid", claims.get("appid") == self.client_id, f"appid {claims.get('appid')!r}")
        check(checks, "appidacr", claims.get("appidacr") == appidacr,
              f"appidacr {claims.get('appidacr')!r}, want {appidacr!r}")
        roles = claims.get("roles")
        check(checks, "roles", isinstance(roles, list) and ROLE in roles, f"roles {roles!r} lacks {ROLE}")
        check(checks, "idtyp", claims.get("idtyp") == "app", f"idtyp {claims.get('idtyp')!r}")
        check(checks, "ver", claims.get("ver") == "1.0", f"ver {claims.get('ver')!r}")
        check(checks, "oid_eq_sub", bool(claims.get("oid")) and claims.get("oid") == claims.get("sub"),
              f"oid {claims.get('oid')!r} sub {claims.get('sub')!r}")
        return header


def msal_case(credential, appidacr: str, v: Verifier, authority: str, out: dict) -> None:
    checks = out["checks"]
    app = msal.ConfidentialClientApplication(
        v.client_id,
        client_credential=credential,
        authority=authority,
        instance_discovery=False,
        timeout=HTTP_TIMEOUT,
    )
    sources = []
    first = app.acquire_token_for_client(SCOPES)
    sources.append(first.get("token_source"))
    check(checks, "first_acquire", "access_token" in first,
          f"no access_token: {first.get('error')} {first.get('error_description')}")
    check(checks, "first_from_idp", first.get("token_source") == "identity_provider",
          f"token_source {first.get('token_source')!r}")
    header = v.verify(first["access_token"], appidacr, checks)
    out["alg"], out["kid"] = header.get("alg"), header.get("kid")

    second = app.acquire_token_for_client(SCOPES)
    sources.append(second.get("token_source"))
    out["token_requests"] = sum(1 for s in sources if s == "identity_provider")
    check(checks, "second_acquire", "access_token" in second,
          f"no access_token: {second.get('error')} {second.get('error_description')}")
    check(checks, "second_from_cache", second.get("token_source") == "cache",
          f"token_source {second.get('token_source')!r}")
    check(checks, "cached_token_same", second["access_token"] == first["access_token"],
          "the cached token differs from the first one")


class CountingTransport(RequestsTransport):
    """azure-core's own requests transport, counting the token requests it sends."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.token_requests = 0

    def send(self, request, **kwargs):
        if request.method == "POST" and "/oauth2/" in request.url:
            self.token_requests += 1
        return super().send(request, **kwargs)


def azure_identity_case(https_url: str, combined_path: str, v: Verifier, out: dict) -> None:
    checks = out["checks"]
    transport = CountingTransport()
    cred = CertificateCredential(
        v.tenant,
        v.client_id,
        certificate_path=combined_path,
        authority=https_url,
        disable_instance_discovery=True,
        transport=transport,
    )
    try:
        first = cred.get_token(SCOPES[0])
        header = v.verify(first.token, "2", checks)
        out["alg"], out["kid"] = header.get("alg"), header.get("kid")
        second = cred.get_token(SCOPES[0])
        check(checks, "cached_token_same", second.token == first.token,
              "the second get_token returned another token")
    finally:
        out["token_requests"] = transport.token_requests
        cred.close()
    check(checks, "one_token_request", transport.token_requests == 1,
          f"{transport.token_requests} token requests for two get_token calls")


def main() -> int:
    https_url = env("M365EMU_HTTPS_URL").rstrip("/")
    tenant = env("M365EMU_TENANT_ID")
    client_id = env("M365EMU_CLIENT_ID")
    secret = env("M365EMU_CLIENT_SECRET")
    cert_pem = open(env("M365EMU_CERT_PEM_PATH"), encoding="ascii").read()
    key_pem = open(env("M365EMU_KEY_PEM_PATH"), encoding="ascii").read()
    combined_path = env("M365EMU_CERT_COMBINED_PATH")
    sha1 = env("M365EMU_THUMBPRINT_SHA1")
    env("REQUESTS_CA_BUNDLE")
    authority = f"{https_url}/{tenant}"

    print(json.dumps({"versions": {
        "python": sys.version.split()[0],
        "msal": msal.__version__,
        "azure-identity": azure.identity.__version__,
        "pyjwt": jwt.__version__,
        "requests": requests.__version__,
    }}), flush=True)

    v = Verifier(https_url, tenant, client_id)
    cases = [
        ("secret", lambda out: msal_case(secret, "1", v, authority, out)),
        ("thumbprint", lambda out: msal_case(
            {"private_key": key_pem, "thumbprint": sha1}, "2", v, authority, out)),
        ("public_certificate", lambda out: msal_case(
            {"private_key": key_pem, "public_certificate": cert_pem}, "2", v,
            authority, out)),
        ("azure_identity", lambda out: azure_identity_case(https_url, combined_path, v, out)),
    ]
    failures = []
    for name, run in cases:
        out = {"case": name, "ok": False, "alg": None, "kid": None, "token_requests": None, "checks": {}}
        try:
            run(out)
            out["ok"] = True
        except CheckFailed as e:
            out["error"] = str(e)
            failures.append(f"{name}: {e}")
        except Exception as e:  # a library raised: report it as this case's failure
            out["error"] = f"{type(e).__name__}: {e}"
            failures.append(f"{name}: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        print(json.dumps(out), flush=True)

    if failures:
        print("msal_app_only.py: FAILED\n" + "\n".join(failures), file=sys.stderr)
        return 1
    print(f"msal_app_only.py: all {len(cases)} cases passed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
