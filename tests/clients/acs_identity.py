#!/usr/bin/env python3
"""The real, unmodified azure-communication-identity SDK against the emulator's ACS resource.

Run by emulator/tests/acs.rs (through scripts/test.sh, which installs the pinned libraries of
tests/clients/requirements.txt). Cases:

  hmac          CommunicationIdentityClient.from_connection_string (HMAC-SHA256 with the
                access key): create_user, create_user_and_token(["chat"]), get_token(["voip"],
                token_expires_in=1 h), revoke_tokens, delete_user; the ACS tokens are checked
                with PyJWT against the emulator's ACS key (GET /_emulator/acs/keys) and their
                state with POST /_emulator/acs/tokens/introspect (revoked tokens stop working).
                An expiry of 59 minutes is refused with HTTP 400.
  teams_user    a Teams user's Entra token from the emulator, obtained by MSAL Python
                (PublicClientApplication auth code flow with PKCE; the emulator runs with
                auto sign-in, so the authorize URL answers 302 at once), exchanged with
                get_token_for_teams_user; the ACS token expires with the Entra token. A wrong
                client id is refused with HTTP 400, an empty Entra token with 401.

Inputs, from the environment:

  M365EMU_ACS_CONNECTION_STRING  endpoint=https://127.0.0.1:PORT/;accesskey=…
  M365EMU_HTTPS_URL              the emulator's HTTPS base URL (control plane)
  M365EMU_TENANT_ID              the Teams user's tenant GUID
  M365EMU_CLIENT_ID              the public Teams client app
  M365EMU_USERNAME               the Teams user's UPN (login_hint)
  REQUESTS_CA_BUNDLE             the emulator's CA certificate

Prints JSON lines: {"versions": …} and one {"case": …, "ok": …, "checks": {…}, …} per case.
Exit status 1, with the reasons on stderr, if any check fails.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import re
import urllib.parse

import jwt
import msal
import requests
from azure.communication.identity import (
    CommunicationIdentityClient,
    CommunicationTokenScope,
)
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from common import HTTP_TIMEOUT, check, env, jwt_part, run_cases

ACS_SCOPES = [
    "https://auth.msft.communication.azure.com/Teams.ManageCalls",
    "https://auth.msft.communication.azure.com/Teams.ManageChats",
]


def parse_expires_on(value) -> float:
    """`2025-07-10T21:39:39.3244584+00:00` (seven fractional digits) or a datetime."""
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    text = re.sub(r"\.(\d{6})\d+", r".\1", str(value))
    return datetime.datetime.fromisoformat(text).timestamp()


def introspect(token: str) -> dict:
    resp = requests.post(f"{env('M365EMU_HTTPS_URL')}/_emulator/acs/tokens/introspect",
                         json={"token": token}, timeout=HTTP_TIMEOUT)
    resp.raise_for_status()
    return resp.json()


def acs_key() -> jwt.PyJWK:
    resp = requests.get(f"{env('M365EMU_HTTPS_URL')}/_emulator/acs/keys", timeout=HTTP_TIMEOUT)
    resp.raise_for_status()
    return jwt.PyJWK(resp.json()["keys"][0], algorithm="RS256")


def verify_acs_token(token: str, checks: dict, name: str) -> dict:
    header = jwt_part(token, 0)
    check(checks, f"{name}_header", header.get("alg") == "RS256" and header.get("typ") == "JWT"
          and bool(header.get("kid")) and bool(header.get("x5t")), f"header {header}")
    claims = jwt.decode(token, key=acs_key(), algorithms=["RS256"],
                        options={"verify_aud": False})
    check(checks, f"{name}_claims", all(k in claims for k in
                                        ("skypeid", "scp", "csi", "iat", "exp", "acsScope", "resourceId")),
          f"claims {sorted(claims)}")
    check(checks, f"{name}_csi", claims["csi"] == str(claims["iat"]), f"csi {claims['csi']!r}")
    return claims


def hmac_case(out: dict) -> None:
    checks = out["checks"]
    client = CommunicationIdentityClient.from_connection_string(
        env("M365EMU_ACS_CONNECTION_STRING"), retry_total=0)

    user = client.create_user()
    out["user_id_prefix"] = user.properties["id"][:6]
    check(checks, "create_user", user.properties["id"].startswith("8:acs:"), f"id {user.properties}")

    user2, token = client.create_user_and_token([CommunicationTokenScope.CHAT])
    claims = verify_acs_token(token.token, checks, "create_user_and_token")
    check(checks, "create_user_and_token_scope", claims["acsScope"] == "chat", f"acsScope {claims['acsScope']!r}")
    check(checks, "create_user_and_token_skypeid", "8:" + claims["skypeid"] == user2.properties["id"],
          f"skypeid {claims['skypeid']!r} vs {user2.properties['id']!r}")
    check(checks, "default_lifetime_24h", claims["exp"] - claims["iat"] == 86400,
          f"exp - iat = {claims['exp'] - claims['iat']}")
    # azure-communication-identity 1.5.0 hands `expiresOn` over as the string it received.
    check(checks, "expires_on_matches_exp", abs(parse_expires_on(token.expires_on) - claims["exp"]) < 1,
          f"expires_on {token.expires_on!r}")

    voip = client.get_token(user, [CommunicationTokenScope.VOIP],
                            token_expires_in=datetime.timedelta(hours=1))
    claims = verify_acs_token(voip.token, checks, "get_token")
    check(checks, "get_token_one_hour", claims["exp"] - claims["iat"] == 3600,
          f"exp - iat = {claims['exp'] - claims['iat']}")
    check(checks, "token_active", introspect(voip.token).get("active") is True, "introspection")

    try:
        client.get_token(user, [CommunicationTokenScope.VOIP],
                         token_expires_in=datetime.timedelta(minutes=59))
        check(checks, "expiry_59_minutes_refused", False, "no error")
    except HttpResponseError as e:
        out["expiry_59_status"] = e.status_code
        check(checks, "expiry_59_minutes_refused", e.status_code == 400, f"status {e.status_code}")

    client.revoke_tokens(user)
    state = introspect(voip.token)
    check(checks, "revoked_token_inactive", state.get("active") is False and state.get("reason") == "revoked",
          f"introspection {state}")
    fresh = client.get_token(user, [CommunicationTokenScope.CHAT])
    check(checks, "new_token_after_revoke_active", introspect(fresh.token).get("active") is True,
          "introspection")

    client.delete_user(user)
    check(checks, "deleted_user_token_inactive", introspect(fresh.token).get("active") is False,
          "introspection")
    try:
        client.get_token(user, [CommunicationTokenScope.CHAT])
        check(checks, "deleted_user_has_no_tokens", False, "no error")
    except HttpResponseError as e:
        check(checks, "deleted_user_has_no_tokens", e.status_code == 404, f"status {e.status_code}")


def teams_user_token() -> tuple[str, dict]:
    """The Teams user's Entra token, by MSAL's auth code flow (PKCE) with auto sign-in."""
    base = env("M365EMU_HTTPS_URL")
    tenant = env("M365EMU_TENANT_ID")
    app = msal.PublicClientApplication(env("M365EMU_CLIENT_ID"), authority=f"{base}/{tenant}",
                                       instance_discovery=False, timeout=HTTP_TIMEOUT)
    flow = app.initiate_auth_code_flow(ACS_SCOPES, redirect_uri="http://localhost",
                                       login_hint=env("M365EMU_USERNAME"))
    resp = requests.get(flow["auth_uri"], allow_redirects=False, timeout=HTTP_TIMEOUT)
    location = resp.headers.get("Location", "")
    if resp.status_code != 302 or not location.startswith("http://localhost"):
        raise RuntimeError(f"authorize answered {resp.status_code}, Location {location!r}: {resp.text[:300]}")
    auth_response = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    if "access_token" not in result:
        raise RuntimeError(f"MSAL: {result.get('error')}: {result.get('error_description')}")
    return result["access_token"], jwt_part(result["access_token"], 1)


def teams_user_case(out: dict) -> None:
    checks = out["checks"]
    client = CommunicationIdentityClient.from_connection_string(
        env("M365EMU_ACS_CONNECTION_STRING"), retry_total=0)
    entra, entra_claims = teams_user_token()
    out["entra_claims"] = {k: entra_claims.get(k) for k in ("aud", "scp", "appid", "tid")}
    check(checks, "entra_token_scopes",
          {"Teams.ManageCalls", "Teams.ManageChats"} <= set(entra_claims.get("scp", "").split()),
          f"scp {entra_claims.get('scp')!r}")

    token = client.get_token_for_teams_user(entra, entra_claims["appid"], entra_claims["oid"])
    claims = verify_acs_token(token.token, checks, "teams_user")
    check(checks, "teams_user_expires_with_entra_token", claims["exp"] == int(entra_claims["exp"]),
          f"exp {claims['exp']} vs Entra exp {entra_claims['exp']}")
    check(checks, "teams_user_token_active", introspect(token.token).get("active") is True,
          "introspection")

    try:
        client.get_token_for_teams_user(entra, "00000000-0000-0000-0000-000000000001", entra_claims["oid"])
        check(checks, "wrong_client_id_refused", False, "no error")
    except HttpResponseError as e:
        check(checks, "wrong_client_id_refused", e.status_code == 400, f"status {e.status_code}")
    try:
        client.get_token_for_teams_user("", entra_claims["appid"], entra_claims["oid"])
        check(checks, "empty_token_refused", False, "no error")
    except (ClientAuthenticationError, HttpResponseError, ValueError) as e:
        status = getattr(e, "status_code", None)
        out["empty_token_error"] = f"{type(e).__name__} {status}"
        check(checks, "empty_token_refused", status in (401, None), f"status {status}")


def main() -> int:
    env("REQUESTS_CA_BUNDLE")
    print(json.dumps({"versions": {name: importlib.metadata.version(name) for name in
                                   ("azure-communication-identity", "azure-core", "msal", "PyJWT")}}),
          flush=True)
    return run_cases([("hmac", hmac_case), ("teams_user", teams_user_case)])


if __name__ == "__main__":
    raise SystemExit(main())
