#!/usr/bin/env python3
"""User flows with the real, unmodified MSAL Python against the emulator.

Run by emulator/tests/browser_and_msal_user_flows.rs (through scripts/test.sh, which installs
the pinned libraries of tests/clients/requirements.txt). One case per run, named by the first
argument:

  auth_code  ConfidentialClientApplication: initiate_auth_code_flow (PKCE, nonce, state), the
             authorize URL fetched with requests (the emulator runs with auto sign-in, so it
             answers 302 at once), acquire_token_by_auth_code_flow; checks the access token
             (signature against the JWKS, upn, scp) and the id token claims, and that the
             account is cached.
  refresh    auth_code, then acquire_token_silent(force_refresh=True) through the refresh
             token (a new access token from the identity provider); the emulator's clock then
             moves 91 days on (POST /_emulator/clock) and the next forced refresh fails with
             AADSTS700082 (acquire_token_silent_with_error returns the error; acquire_token_silent
             returns None).
  ropc       PublicClientApplication.acquire_token_by_username_password against an authority
             on port 443 (MSAL Python first GETs https://{host}/common/userrealm/{user}, on
             port 443 whatever the authority's port).

Inputs, all from the environment:

  M365EMU_AUTHORITY        e.g. https://127.0.0.1:41234/{tenant} (ropc: https://127.0.0.1/{tenant})
  M365EMU_CONTROL_URL      the emulator's HTTPS base URL, for /_emulator/clock and the JWKS
  M365EMU_TENANT_ID        the tenant GUID
  M365EMU_CLIENT_ID        the confidential client (auth_code, refresh) or public client (ropc)
  M365EMU_CLIENT_SECRET    its secret (auth_code, refresh)
  M365EMU_REDIRECT_URI     a registered reply URL (auth_code, refresh)
  M365EMU_USERNAME         the user's UPN (login_hint; ropc username)
  M365EMU_PASSWORD         the user's password (ropc)
  REQUESTS_CA_BUNDLE       the emulator's CA certificate

Prints JSON lines: {"versions": …} and one {"case": …, "ok": …, "checks": {…}, …}. Exit
status 1, with the reasons on stderr, if any check fails.
"""

from __future__ import annotations

import logging
import os
import sys
import urllib.parse

import jwt
import msal
import requests

from common import HTTP_TIMEOUT, Jwks, check, env, print_versions, run_case

SCOPES = ["User.Read"]
GRAPH = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
NINETY_ONE_DAYS = 91 * 24 * 3600


def error_text(result) -> str:
    if not isinstance(result, dict):
        return repr(result)
    return f"{result.get('error')}: {result.get('error_description')} (codes {result.get('error_codes')})"


class Verifier:
    """Checks delegated v1 access tokens against the emulator's JWKS."""

    def __init__(self, control_url: str, tenant: str):
        self.jwks = Jwks(control_url, tenant, require_keys=False)

    def access_token(self, token: str, checks: dict, prefix: str) -> dict:
        return self.jwks.decode_v1(token, jwt.get_unverified_header(token), checks, [GRAPH, GRAPH_APP_ID],
                                   prefix=f"{prefix}_", claims_on_error=False)


def check_user_token(claims: dict, checks: dict, prefix: str, upn: str, tenant: str, client_id: str,
                     appidacr: str) -> None:
    check(checks, f"{prefix}_upn", claims.get("upn") == upn, f"upn {claims.get('upn')!r}, want {upn!r}")
    check(checks, f"{prefix}_tid", claims.get("tid") == tenant, f"tid {claims.get('tid')!r}")
    check(checks, f"{prefix}_appid", claims.get("appid") == client_id, f"appid {claims.get('appid')!r}")
    check(checks, f"{prefix}_appidacr", claims.get("appidacr") == appidacr,
          f"appidacr {claims.get('appidacr')!r}, want {appidacr!r}")
    scp = (claims.get("scp") or "").split()
    check(checks, f"{prefix}_scp_user_read", "User.Read" in scp, f"scp {claims.get('scp')!r} lacks User.Read")
    check(checks, f"{prefix}_idtyp_user", claims.get("idtyp") == "user", f"idtyp {claims.get('idtyp')!r}")


def confidential_app(authority: str) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        env("M365EMU_CLIENT_ID"),
        client_credential=env("M365EMU_CLIENT_SECRET"),
        authority=authority,
        instance_discovery=False,
        timeout=HTTP_TIMEOUT,
    )


def auth_code(out: dict, v: Verifier):
    """(a) The confidential auth-code flow; returns the app and the cached account."""
    checks = out["checks"]
    authority = env("M365EMU_AUTHORITY")
    tenant = env("M365EMU_TENANT_ID")
    client_id = env("M365EMU_CLIENT_ID")
    redirect_uri = env("M365EMU_REDIRECT_URI")
    upn = env("M365EMU_USERNAME")
    app = confidential_app(authority)

    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=redirect_uri, login_hint=upn)
    check(checks, "flow_has_auth_uri", "auth_uri" in flow, f"flow {sorted(flow)}")
    auth_uri = flow["auth_uri"]
    sent = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(auth_uri).query))
    out["authorize_params"] = sorted(sent)
    check(checks, "authorize_has_pkce", sent.get("code_challenge_method") == "S256",
          f"authorize query {sent}")

    resp = requests.get(auth_uri, allow_redirects=False, timeout=HTTP_TIMEOUT)
    location = resp.headers.get("Location", "")
    check(checks, "authorize_302", resp.status_code == 302 and location.startswith(redirect_uri),
          f"GET {auth_uri} -> {resp.status_code}, Location {location!r}, body {resp.text[:500]!r}")
    auth_response = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    out["redirect_params"] = sorted(auth_response)
    check(checks, "redirect_has_code_and_state",
          bool(auth_response.get("code")) and auth_response.get("state") == flow.get("state"),
          f"redirect params {sorted(auth_response)}; state {auth_response.get('state')!r} vs {flow.get('state')!r}")

    result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    check(checks, "token_by_auth_code", "access_token" in result, error_text(result))
    out["token_source"] = result.get("token_source")
    check(checks, "token_from_idp", result.get("token_source") == "identity_provider",
          f"token_source {result.get('token_source')!r}")
    check(checks, "has_refresh_token", bool(result.get("refresh_token")), f"keys {sorted(result)}")
    claims = v.access_token(result["access_token"], checks, "access_token")
    check_user_token(claims, checks, "access_token", upn, tenant, client_id, "1")
    out["access_token_claims"] = {k: claims.get(k) for k in ("aud", "upn", "scp", "tid", "appid", "appidacr")}

    idc = result.get("id_token_claims") or {}
    out["id_token_claims"] = {k: idc.get(k) for k in ("aud", "iss", "tid", "oid", "preferred_username", "nonce")}
    check(checks, "id_token_aud", idc.get("aud") == client_id, f"aud {idc.get('aud')!r}")
    check(checks, "id_token_tid", idc.get("tid") == tenant, f"tid {idc.get('tid')!r}")
    check(checks, "id_token_user", idc.get("preferred_username") == upn,
          f"preferred_username {idc.get('preferred_username')!r}")
    check(checks, "id_token_oid", bool(idc.get("oid")), f"oid {idc.get('oid')!r}")
    check(checks, "id_token_iss", idc.get("iss") == f"https://login.microsoftonline.com/{tenant}/v2.0",
          f"iss {idc.get('iss')!r}")

    accounts = app.get_accounts(username=upn)
    out["accounts"] = [{"username": a.get("username"), "home_account_id": a.get("home_account_id")}
                       for a in accounts]
    check(checks, "account_cached", len(accounts) == 1, f"accounts {out['accounts']}")
    home = accounts[0].get("home_account_id") or ""
    check(checks, "home_account_id", home == f"{idc.get('oid')}.{tenant}",
          f"home_account_id {home!r} (client_info uid.utid), want oid.tid")
    return app, accounts[0], result


def refresh(out: dict, v: Verifier) -> None:
    """(b) Refresh with the refresh token; after 91 idle days it has expired (AADSTS700082)."""
    checks = out["checks"]
    tenant = env("M365EMU_TENANT_ID")
    client_id = env("M365EMU_CLIENT_ID")
    upn = env("M365EMU_USERNAME")
    control = env("M365EMU_CONTROL_URL")
    app, account, first = auth_code(out, v)

    refreshed = app.acquire_token_silent(SCOPES, account, force_refresh=True)
    check(checks, "refresh_ok", isinstance(refreshed, dict) and "access_token" in refreshed,
          error_text(refreshed))
    out["refresh_token_source"] = refreshed.get("token_source")
    check(checks, "refresh_from_idp", refreshed.get("token_source") == "identity_provider",
          f"token_source {refreshed.get('token_source')!r}")
    check(checks, "refresh_new_access_token", refreshed["access_token"] != first["access_token"],
          "the refreshed access token is the first one")
    claims = v.access_token(refreshed["access_token"], checks, "refreshed")
    check_user_token(claims, checks, "refreshed", upn, tenant, client_id, "1")

    resp = requests.post(f"{control}/_emulator/clock", json={"advance_seconds": NINETY_ONE_DAYS},
                         timeout=HTTP_TIMEOUT)
    check(checks, "clock_advanced", resp.status_code == 200,
          f"POST /_emulator/clock -> {resp.status_code} {resp.text[:300]}")
    out["clock_after"] = resp.json().get("now")

    expired = app.acquire_token_silent_with_error(SCOPES, account, force_refresh=True)
    out["expired"] = ({k: expired.get(k) for k in ("error", "error_codes", "suberror")}
                      if isinstance(expired, dict) else expired)
    check(checks, "expired_is_error", isinstance(expired, dict) and "error" in expired
          and "access_token" not in expired, f"got {error_text(expired)}")
    check(checks, "expired_invalid_grant", expired.get("error") == "invalid_grant", error_text(expired))
    check(checks, "expired_700082", 700082 in (expired.get("error_codes") or [])
          and "AADSTS700082" in (expired.get("error_description") or ""), error_text(expired))
    out["expired_description"] = (expired.get("error_description") or "").split("\r\n")[0]

    # MSAL answers this identical request from its cache of HTTP 400 answers (60 s): the
    # emulator sees no second refused refresh.
    again = app.acquire_token_silent(SCOPES, account, force_refresh=True)
    out["acquire_token_silent_after_expiry"] = again
    check(checks, "silent_returns_none", again is None, f"acquire_token_silent returned {error_text(again)}")


def ropc(out: dict, v: Verifier) -> None:
    """(c) Username and password with a public client; the authority is on port 443."""
    checks = out["checks"]
    authority = env("M365EMU_AUTHORITY")
    tenant = env("M365EMU_TENANT_ID")
    client_id = env("M365EMU_CLIENT_ID")
    upn = env("M365EMU_USERNAME")

    # MSAL's own http client (requests): the emulator's journal shows what it asked for,
    # the user-realm discovery on port 443 included.
    app = msal.PublicClientApplication(
        client_id,
        authority=authority,
        instance_discovery=False,
        timeout=HTTP_TIMEOUT,
    )
    result = app.acquire_token_by_username_password(upn, env("M365EMU_PASSWORD"), scopes=SCOPES)
    check(checks, "password_grant", "access_token" in result, error_text(result))
    out["token_source"] = result.get("token_source")
    claims = v.access_token(result["access_token"], checks, "access_token")
    # A public client has no credential: appidacr "0".
    check_user_token(claims, checks, "access_token", upn, tenant, client_id, "0")
    out["access_token_claims"] = {k: claims.get(k) for k in ("aud", "upn", "scp", "tid", "appid", "appidacr")}
    idc = result.get("id_token_claims") or {}
    check(checks, "id_token_user", idc.get("preferred_username") == upn,
          f"preferred_username {idc.get('preferred_username')!r}")
    accounts = app.get_accounts(username=upn)
    check(checks, "account_cached", len(accounts) == 1, f"{len(accounts)} accounts")


def auth_code_only(out: dict, v: Verifier) -> None:
    auth_code(out, v)


CASES = {"auth_code": auth_code_only, "refresh": refresh, "ropc": ropc}


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print(f"usage: msal_user_flows.py {{{'|'.join(CASES)}}}", file=sys.stderr)
        return 2
    name = sys.argv[1]
    env("REQUESTS_CA_BUNDLE")
    if os.environ.get("M365EMU_MSAL_DEBUG") == "1":
        logging.basicConfig(level=logging.DEBUG)
    print_versions({"msal": msal, "pyjwt": jwt, "requests": requests})

    def run(out: dict) -> None:
        CASES[name](out, Verifier(env("M365EMU_CONTROL_URL").rstrip("/"), env("M365EMU_TENANT_ID")))

    failure = run_case({"case": name, "ok": False, "checks": {}}, run)
    if failure is not None:
        print(f"msal_user_flows.py {name}: FAILED\n{failure}", file=sys.stderr)
        return 1
    print(f"msal_user_flows.py {name}: passed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
