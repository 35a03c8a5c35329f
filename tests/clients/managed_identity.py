#!/usr/bin/env python3
"""Managed-identity tokens from the emulator with the real, unmodified azure-identity.

Run by emulator/tests/clients.rs (through scripts/test.sh, which installs the pinned
libraries of tests/clients/requirements.txt). By hand, against a running emulator:

  eval "$(m365-emulator env)"   # IDENTITY_ENDPOINT, IDENTITY_HEADER, ... (see README)
  M365EMU_TENANT_ID=... M365EMU_MI_CLIENT_ID=... M365EMU_MI_OBJECT_ID=... \
  M365EMU_MI_RESOURCE_ID=... python tests/clients/managed_identity.py

Inputs, all from the environment:

  IDENTITY_ENDPOINT        App Service endpoint, {http_url}/msi/token (ready.json identity_endpoint)
  IDENTITY_HEADER          its secret (ready.json identity_header)
  AZURE_POD_IDENTITY_AUTHORITY_HOST
                           optional: the emulator's plain-HTTP URL; enables the IMDS cases
  M365EMU_HTTPS_URL        emulator HTTPS base URL (for the JWKS)
  REQUESTS_CA_BUNDLE       the emulator's CA certificate
  M365EMU_TENANT_ID        the identity's tenant GUID
  M365EMU_MI_CLIENT_ID     the system-assigned identity's client id
  M365EMU_MI_OBJECT_ID     its object (principal) id
  M365EMU_MI_RESOURCE_ID   its ARM resource id

Cases (App Service source: IDENTITY_ENDPOINT + IDENTITY_HEADER set):
  app_service_system        ManagedIdentityCredential()                        -> system identity
  app_service_client_id     ManagedIdentityCredential(client_id=...)           -> client_id=
  app_service_resource_id   ManagedIdentityCredential(identity_config={"resource_id": ...}) -> mi_res_id=
  app_service_object_id     ManagedIdentityCredential(identity_config={"object_id": ...})   -> object_id=
  app_service_unknown_identity  an unknown client id: the credential must fail with the
                            emulator's "Unable to load the proper Managed Identity." message
IMDS source (IDENTITY_* removed from the environment, AZURE_POD_IDENTITY_AUTHORITY_HOST set):
  imds_system               ManagedIdentityCredential()
  imds_unknown_identity     an unknown client id: fails with "Identity not found"

Every token case acquires a token for https://communication.azure.com/.default twice (the
second must come from the client's cache), verifies it with PyJWT against the emulator's JWKS
and checks its claims (appid = the identity's client id, roles contains Communication.Manage,
oid = sub = object id, xms_mirid = resource id, appidacr "2", idtyp "app", ver "1.0"). One
JSON line per case goes to stdout with `token_requests`: the GETs its transport sent to the
identity endpoint. Exit status 1, with the reasons on stderr, if any check fails.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager

import azure.identity
import jwt
import msal
import requests
from azure.identity import ManagedIdentityCredential

from common import (CheckFailed, CountingTransport, Jwks, check, env, get_token_twice, jwt_part,
                    print_versions, run_cases)

RESOURCE = "https://communication.azure.com"
SCOPE = f"{RESOURCE}/.default"
ROLE = "Communication.Manage"
UNKNOWN_CLIENT_ID = "11111111-2222-3333-4444-555555555555"
IDENTITY_VARS = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")


class Expected:
    """What the emulator's managed identity must look like in a token."""

    def __init__(self) -> None:
        self.https_url = env("M365EMU_HTTPS_URL").rstrip("/")
        self.tenant = env("M365EMU_TENANT_ID")
        self.client_id = env("M365EMU_MI_CLIENT_ID")
        self.object_id = env("M365EMU_MI_OBJECT_ID")
        self.resource_id = env("M365EMU_MI_RESOURCE_ID")
        env("REQUESTS_CA_BUNDLE")
        self.jwks = Jwks(self.https_url, self.tenant)

    def verify(self, token: str, checks: dict) -> dict:
        header = jwt.get_unverified_header(token)
        check(checks, "header_alg_rs256", header.get("alg") == "RS256", f"alg {header.get('alg')!r}")
        check(checks, "header_x5t_eq_kid", header.get("x5t") == header.get("kid"), f"header {header}")
        claims = self.jwks.decode_v1(token, header, checks, RESOURCE)
        check(checks, "tid", claims.get("tid") == self.tenant, f"tid {claims.get('tid')!r}")
        check(checks, "appid", claims.get("appid") == self.client_id,
              f"appid {claims.get('appid')!r}, want {self.client_id!r}")
        roles = claims.get("roles")
        check(checks, "roles", isinstance(roles, list) and ROLE in roles, f"roles {roles!r} lacks {ROLE}")
        check(checks, "oid", claims.get("oid") == self.object_id, f"oid {claims.get('oid')!r}")
        check(checks, "sub_eq_oid", claims.get("sub") == claims.get("oid"), f"sub {claims.get('sub')!r}")
        check(checks, "xms_mirid", claims.get("xms_mirid") == self.resource_id,
              f"xms_mirid {claims.get('xms_mirid')!r}")
        check(checks, "appidacr", claims.get("appidacr") == "2", f"appidacr {claims.get('appidacr')!r}")
        check(checks, "idtyp", claims.get("idtyp") == "app", f"idtyp {claims.get('idtyp')!r}")
        check(checks, "ver", claims.get("ver") == "1.0", f"ver {claims.get('ver')!r}")
        return claims


def identity_transport() -> CountingTransport:
    """Counts the requests to the identity endpoint (App Service or IMDS)."""
    return CountingTransport("GET", ("/msi/token", "/metadata/identity/oauth2/token"))


@contextmanager
def imds_environment():
    """IDENTITY_ENDPOINT/IDENTITY_HEADER removed: the credentials fall back to IMDS, which
    AZURE_POD_IDENTITY_AUTHORITY_HOST redirects to the emulator."""
    saved = {k: os.environ.pop(k) for k in IDENTITY_VARS if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def token_case(make_credential, want: Expected, out: dict) -> None:
    checks = out["checks"]
    transport = identity_transport()
    cred = make_credential(transport)
    before = time.time()

    def check_first(first) -> None:
        claims = want.verify(first.token, checks)
        out["claims"] = {k: claims.get(k) for k in ("aud", "appid", "oid", "roles", "tid", "xms_mirid")}
        lifetime = first.expires_on - before
        check(checks, "expires_on", 3000 <= lifetime <= 3700,
              f"expires_on {first.expires_on} is {lifetime:.0f} s away, want about 3600")

    get_token_twice(cred, transport, SCOPE, out, check_first, "identity-endpoint requests")


def failure_case(make_credential, expected_text: str, out: dict) -> None:
    checks = out["checks"]
    transport = identity_transport()
    cred = make_credential(transport)
    try:
        try:
            token = cred.get_token(SCOPE)
        except Exception as e:  # the credential must refuse, naming the emulator's reason
            out["raised"] = f"{type(e).__name__}: {e}"
            check(checks, "message", expected_text in str(e),
                  f"{type(e).__name__} does not mention {expected_text!r}: {e}")
            return
        raise CheckFailed(f"raised: an unknown identity got a token ({jwt_part(token.token, 1)})")
    finally:
        out["token_requests"] = transport.token_requests
        cred.close()


def main() -> int:
    for name in IDENTITY_VARS:
        env(name)
    want = Expected()
    imds_host = os.environ.get("AZURE_POD_IDENTITY_AUTHORITY_HOST", "")

    print_versions({
        "msal": msal,
        "azure-identity": azure.identity,
        "pyjwt": jwt,
        "requests": requests,
    })

    cases = [
        ("app_service_system", lambda out: token_case(
            lambda t: ManagedIdentityCredential(transport=t), want, out)),
        ("app_service_client_id", lambda out: token_case(
            lambda t: ManagedIdentityCredential(client_id=want.client_id, transport=t), want, out)),
        ("app_service_resource_id", lambda out: token_case(
            lambda t: ManagedIdentityCredential(
                identity_config={"resource_id": want.resource_id}, transport=t), want, out)),
        ("app_service_object_id", lambda out: token_case(
            lambda t: ManagedIdentityCredential(
                identity_config={"object_id": want.object_id}, transport=t), want, out)),
        ("app_service_unknown_identity", lambda out: failure_case(
            lambda t: ManagedIdentityCredential(client_id=UNKNOWN_CLIENT_ID, transport=t),
            "Unable to load the proper Managed Identity.", out)),
    ]
    if imds_host:
        def imds(run):
            def case(out):
                with imds_environment():
                    run(out)
            return case
        cases += [
            ("imds_system", imds(lambda out: token_case(
                lambda t: ManagedIdentityCredential(transport=t), want, out))),
            ("imds_unknown_identity", imds(lambda out: failure_case(
                lambda t: ManagedIdentityCredential(client_id=UNKNOWN_CLIENT_ID, transport=t),
                "Identity not found", out))),
        ]

    return run_cases(cases, token_requests=None)


if __name__ == "__main__":
    sys.exit(main())
