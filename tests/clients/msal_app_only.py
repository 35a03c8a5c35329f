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

import sys

import azure.identity
import jwt
import msal
import requests
from azure.identity import CertificateCredential

from common import HTTP_TIMEOUT, CountingTransport, Jwks, check, env, get_token_twice, print_versions, run_cases

RESOURCE = "https://manage.office.com"
SCOPES = [f"{RESOURCE}/.default"]
ROLE = "ActivityFeed.Read"


class Verifier:
    """Checks an access token against the emulator's JWKS and Entra's v1 app-only claims."""

    def __init__(self, https_url: str, tenant: str, client_id: str):
        self.tenant = tenant
        self.client_id = client_id
        self.jwks = Jwks(https_url, tenant)

    def verify(self, token: str, appidacr: str, checks: dict) -> dict:
        header = jwt.get_unverified_header(token)
        check(checks, "header_alg_rs256", header.get("alg") == "RS256", f"alg {header.get('alg')!r}")
        claims = self.jwks.decode_v1(token, header, checks, RESOURCE, kid_detail=f" ({self.jwks.url})")
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


def azure_identity_case(https_url: str, combined_path: str, v: Verifier, out: dict) -> None:
    transport = CountingTransport("POST", ("/oauth2/",))
    cred = CertificateCredential(
        v.tenant,
        v.client_id,
        certificate_path=combined_path,
        authority=https_url,
        disable_instance_discovery=True,
        transport=transport,
    )

    def check_first(first) -> None:
        header = v.verify(first.token, "2", out["checks"])
        out["alg"], out["kid"] = header.get("alg"), header.get("kid")

    get_token_twice(cred, transport, SCOPES[0], out, check_first, "token requests")


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

    print_versions({
        "msal": msal,
        "azure-identity": azure.identity,
        "pyjwt": jwt,
        "requests": requests,
    })

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
    return run_cases(cases, alg=None, kid=None, token_requests=None)


if __name__ == "__main__":
    sys.exit(main())
