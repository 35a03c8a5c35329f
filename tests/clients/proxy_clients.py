#!/usr/bin/env python3
"""Proxy mode: unmodified clients that use the real Microsoft host names, with nothing but
HTTPS_PROXY and REQUESTS_CA_BUNDLE pointing them at the emulator.

Run by emulator/tests/proxy.rs (through scripts/test.sh). Inputs, all from the environment:

  HTTPS_PROXY / HTTP_PROXY    the emulator's forward proxy
  NO_PROXY                    loopback only (the control plane below is reached directly)
  REQUESTS_CA_BUNDLE          the emulator's CA certificate
  M365EMU_HTTP_URL            the emulator's plain-HTTP URL (control plane: the clock)
  M365EMU_TENANT_ID           tenant GUID
  M365EMU_CLIENT_ID           application (client) id
  M365EMU_CLIENT_SECRET       a valid client secret
  M365EMU_KEY_PEM_PATH        the certificate's private key (PEM)
  M365EMU_THUMBPRINT_SHA1     SHA-1 thumbprint of the certificate, hex

Cases (one JSON line each on stdout):
  msal_secret        MSAL Python with its default authority https://login.microsoftonline.com/{tenant}
                     (instance discovery left on), client secret; the token verifies against
                     the JWKS fetched from login.microsoftonline.com.
  msal_certificate   the same with a certificate (RS256 + x5t): the assertion's `aud` is the
                     token endpoint of the discovery document, on the real host.
  management_drain   a `requests` Management Activity API client with hard-coded
                     https://manage.office.com URLs: starts an Audit.General subscription,
                     lets the emulator's clock run, lists content following NextPageUri and
                     fetches every blob.
Exit status 1, with the reasons on stderr, if any check fails.
"""

from __future__ import annotations

import sys

import jwt
import msal
import requests

from common import HTTP_TIMEOUT, Jwks, check, env, print_versions, run_cases

AUTHORITY_HOST = "https://login.microsoftonline.com"
MANAGE = "https://manage.office.com"
SCOPES = [f"{MANAGE}/.default"]
CONTENT_TYPE = "Audit.General"


def msal_app(credential):
    # Exactly as in production: the default authority, nothing about the emulator.
    return msal.ConfidentialClientApplication(
        env("M365EMU_CLIENT_ID"),
        client_credential=credential,
        authority=f"{AUTHORITY_HOST}/{env('M365EMU_TENANT_ID')}",
    )


def acquire(app, out: dict) -> str:
    checks = out["checks"]
    result = app.acquire_token_for_client(SCOPES)
    check(checks, "token_acquired", "access_token" in result, f"MSAL answered {result}")
    token = result["access_token"]
    tenant = env("M365EMU_TENANT_ID")
    jwks = Jwks(AUTHORITY_HOST, tenant)
    header = jwt.get_unverified_header(token)
    claims = jwks.decode_v1(token, header, checks, MANAGE)
    check(checks, "tid", claims.get("tid") == tenant, f"tid {claims.get('tid')!r}")
    check(checks, "appid", claims.get("appid") == env("M365EMU_CLIENT_ID"),
          f"appid {claims.get('appid')!r}")
    out["token_endpoint"] = app.authority.token_endpoint
    check(checks, "token_endpoint_on_real_host",
          app.authority.token_endpoint == f"{AUTHORITY_HOST}/{tenant}/oauth2/v2.0/token",
          f"MSAL discovered {app.authority.token_endpoint}")
    return token


def msal_secret(out: dict) -> None:
    acquire(msal_app(env("M365EMU_CLIENT_SECRET")), out)


def msal_certificate(out: dict) -> None:
    with open(env("M365EMU_KEY_PEM_PATH")) as f:
        key = f.read()
    acquire(msal_app({"private_key": key, "thumbprint": env("M365EMU_THUMBPRINT_SHA1")}), out)


def advance_clock(seconds: int) -> None:
    # The test harness's part, not the client's: on loopback, outside the proxy (NO_PROXY).
    resp = requests.post(f"{env('M365EMU_HTTP_URL')}/_emulator/clock",
                         json={"advance_seconds": seconds}, timeout=HTTP_TIMEOUT)
    resp.raise_for_status()


def management_drain(out: dict) -> None:
    checks = out["checks"]
    tenant = env("M365EMU_TENANT_ID")
    token = acquire(msal_app(env("M365EMU_CLIENT_SECRET")), {"checks": {}})
    feed = f"{MANAGE}/api/v1.0/{tenant}/activity/feed"
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    start = session.post(f"{feed}/subscriptions/start?contentType={CONTENT_TYPE}",
                         timeout=HTTP_TIMEOUT)
    check(checks, "subscription_started", start.status_code == 200,
          f"{start.status_code} {start.text}")
    out["subscription"] = start.json()
    advance_clock(int(env("M365EMU_ADVANCE_SECONDS")))

    url = f"{feed}/subscriptions/content?contentType={CONTENT_TYPE}"
    pages, entries, next_uris = 0, [], []
    while url:
        resp = session.get(url, timeout=HTTP_TIMEOUT)
        check(checks, "content_pages_ok", resp.status_code == 200,
              f"{url}: {resp.status_code} {resp.text}")
        pages += 1
        entries.extend(resp.json())
        url = resp.headers.get("NextPageUri")
        if url:
            next_uris.append(url)
        check(checks, "bounded_paging", pages <= 100, "more than 100 pages")
    out["pages"] = pages
    out["next_page_uris"] = next_uris
    check(checks, "paged", pages >= 2, f"{pages} page(s) only")
    check(checks, "next_page_uri_on_real_host",
          all(u.startswith(f"{feed}/subscriptions/content?") for u in next_uris),
          f"NextPageUri {next_uris}")
    content_uris = [e["contentUri"] for e in entries]
    check(checks, "content_uri_on_real_host",
          bool(content_uris) and all(u.startswith(f"{feed}/audit/") for u in content_uris),
          f"contentUri {content_uris[:3]}")

    records = 0
    for entry in entries:
        blob = session.get(entry["contentUri"], timeout=HTTP_TIMEOUT)
        check(checks, "blobs_ok", blob.status_code == 200,
              f"{entry['contentUri']}: {blob.status_code} {blob.text[:200]}")
        items = blob.json()
        check(checks, "blobs_hold_records", isinstance(items, list) and len(items) > 0,
              f"{entry['contentUri']}: {str(items)[:200]}")
        records += len(items)
    out["blobs"] = len(entries)
    out["records"] = records


def main() -> int:
    print_versions({"msal": msal, "requests": requests, "jwt": jwt})
    return run_cases([
        ("msal_secret", msal_secret),
        ("msal_certificate", msal_certificate),
        ("management_drain", management_drain),
    ])


if __name__ == "__main__":
    sys.exit(main())
