#!/usr/bin/env python3
"""A deliberately naive Microsoft 365 client: the conformance suite's negative fixture.

Everything here is a mistake real clients make; conformance/tests/mutation.rs runs it against
every scenario to prove that each check fails when a client violates it. Do not copy it.

  * no token cache: every call gets a new token;
  * errors swallowed: exits 0 and prints nothing useful (unless --raise);
  * 429: retries at once, ignoring Retry-After; 5xx: no retry;
  * the Management API: never starts a subscription (--start-always: starts it every time
    and treats AF20024 as a failure), one window from the cursor to now whatever its length,
    NextPageUri ignored, cursor on the newest *event* time (CreationTime), no overlap, no
    de-duplication; --double-fetch downloads every blob twice;
  * certificate assertions: `aud` = the authority host, one-hour lifetime, no thumbprint;
  * --bad-scope: asks for the resource without `/.default`.

Uses only `requests` and `cryptography` (both in the test virtualenv).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import sys
import time
import uuid

import requests

FLAGS = set(sys.argv[1:])


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(token_url: str) -> str:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    pem = open(env("AZURE_CLIENT_CERTIFICATE_PATH"), "rb").read()
    key = serialization.load_pem_private_key(pem[pem.index(b"-----BEGIN PRIVATE KEY"):], password=None)
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {"aud": env("AZURE_AUTHORITY_HOST"), "iss": env("AZURE_CLIENT_ID"), "sub": env("AZURE_CLIENT_ID"),
              "jti": str(uuid.uuid4()), "nbf": now, "exp": now + 3600}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(sig)}"


def post(url: str, **kw) -> requests.Response:
    r = requests.post(url, timeout=30, **kw)
    if r.status_code == 429:  # retry at once, whatever Retry-After says
        r = requests.post(url, timeout=30, **kw)
    return r


def get(url: str, **kw) -> requests.Response:
    r = requests.get(url, timeout=30, **kw)
    if r.status_code == 429:
        r = requests.get(url, timeout=30, **kw)
    return r


def token(scope: str) -> str:
    url = f"{env('AZURE_AUTHORITY_HOST')}/{env('AZURE_TENANT_ID')}/oauth2/v2.0/token"
    if "--bad-scope" in FLAGS:
        scope = scope.replace("/.default", "")
    form = {"grant_type": "client_credentials", "client_id": env("AZURE_CLIENT_ID"), "scope": scope}
    if env("AZURE_CLIENT_CERTIFICATE_PATH"):
        form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        form["client_assertion"] = assertion(url)
    else:
        form["client_secret"] = env("AZURE_CLIENT_SECRET")
    r = post(url, data=form)
    r.raise_for_status()
    return r.json()["access_token"]


def op_token() -> None:
    scope = env("M365_CONFORMANCE_SCOPE", "https://manage.office.com/.default")
    for attempt in range(1, int(env("M365_CONFORMANCE_REPEAT", "1")) + 1):
        token(scope)  # no cache
        print(json.dumps({"token": "acquired", "attempt": attempt}), flush=True)


def op_audit_sync() -> None:
    feed = env("M365_MANAGEMENT_URL")
    state_path = env("M365_CONFORMANCE_STATE")
    cursor = env("M365_AUDIT_SINCE")
    if state_path and os.path.exists(state_path):
        cursor = open(state_path).read().strip() or cursor
    auth = lambda: {"Authorization": f"Bearer {token('https://manage.office.com/.default')}"}  # noqa: E731
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    newest = cursor
    for ct in env("M365_AUDIT_CONTENT_TYPES").split(","):
        if "--start-always" in FLAGS:
            r = post(f"{feed}/subscriptions/start", params={"contentType": ct}, headers=auth())
            r.raise_for_status()  # AF20024 is a 400: "failure"
        start = cursor.replace("+00:00", "").replace("Z", "")
        r = get(f"{feed}/subscriptions/content", params={"contentType": ct, "startTime": start, "endTime": now}, headers=auth())
        r.raise_for_status()
        for entry in r.json():  # the first page only: NextPageUri ignored
            blob = get(entry["contentUri"], headers=auth())
            if "--double-fetch" in FLAGS:
                blob = get(entry["contentUri"], headers=auth())
            blob.raise_for_status()
            for record in blob.json():
                print(json.dumps({"record": record["Id"], "contentType": ct}), flush=True)
                created = record.get("CreationTime", "")
                if created > newest.replace("Z", "").replace("+00:00", ""):
                    newest = created  # cursor on event time
    if state_path:
        open(state_path, "w").write(newest)


def main() -> int:
    op = env("M365_CONFORMANCE_OPERATION")
    if op == "describe":
        print(json.dumps({"operations": ["token", "audit-sync"]}))
        return 0
    try:
        {"token": op_token, "audit-sync": op_audit_sync}[op]()
    except Exception as e:  # swallowed: the caller never learns
        if "--raise" in FLAGS:
            raise
        print(f"naive: ignoring {e!r}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
