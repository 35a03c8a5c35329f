"""The naive client's Azure Communication Services operations (see naive.py for the flags).

Its own HMAC signer, with the classic mistakes: it signs the percent-*decoded* path and query
(fine until a query holds %20 or %2F), re-serialises the JSON it is given, reports any 2xx PUT
as "created", treats the 404 of a missing assignment as an error, ignores the requested token
lifetime, and retries like naive_common (429 once at once, 5xx never) by replaying the same
signed headers.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import time
import urllib.parse

import requests

from naive_common import FLAGS, _send, env, token

EMPTY_HASH = base64.b64encode(hashlib.sha256(b"").digest()).decode()


def _connection() -> tuple[str, bytes]:
    """(endpoint without trailing slash, decoded access key) from ACS_CONNECTION_STRING."""
    parts = dict(p.split("=", 1) for p in env("ACS_CONNECTION_STRING").split(";") if "=" in p)
    lower = {k.lower(): v for k, v in parts.items()}
    return lower["endpoint"].rstrip("/"), base64.b64decode(lower["accesskey"])


def _url(endpoint: str, path_and_query: str) -> str:
    """--reencode-query: the query goes through `params=`, so requests encodes it its own way."""
    if "--reencode-query" in FLAGS and "?" in path_and_query:
        path, query = path_and_query.split("?", 1)
        params = urllib.parse.parse_qsl(query, keep_blank_values=True)
        return requests.Request("GET", endpoint + path, params=params).prepare().url
    return endpoint + path_and_query


def _signature(method: str, url: str, body: bytes, key: bytes) -> dict:
    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    if "--sign-path-only" in FLAGS:
        target = parts.path
    else:
        target = urllib.parse.unquote(target)  # the mistake: the decoded target, not the raw one
    if "--iso-date" in FLAGS:
        date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    else:
        date = email.utils.formatdate(usegmt=True)
    digest = EMPTY_HASH if "--hash-empty" in FLAGS else base64.b64encode(hashlib.sha256(body).digest()).decode()
    to_sign = f"{method}\n{target}\n{date};{parts.netloc};{digest}"
    sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
    return {"x-ms-date": date, "x-ms-content-sha256": digest,
            "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={sig}"}


def _acs(method: str, path_and_query: str, body: bytes = b"") -> requests.Response:
    endpoint, key = _connection()
    url = _url(endpoint, path_and_query)
    if env("M365_ACS_AUTH") == "entra" and "--hmac-always" not in FLAGS:
        headers = {"Authorization": f"Bearer {token('https://communication.azure.com/.default')}"}
    else:
        headers = _signature(method, url, body, key)
    if body:
        headers["Content-Type"] = "application/json"
    if "--sign-once" not in FLAGS:
        return _send(method, url, headers=headers, data=body)
    # --sign-once: a careful retry loop around a request signed once, replayed as it is.
    for _ in range(4):
        r = requests.request(method, url, headers=headers, data=body, timeout=30)
        if r.status_code != 429 and r.status_code < 500:
            return r
        time.sleep(float(r.headers.get("Retry-After", "1")))
    return r


def op_identity() -> None:
    scopes = [s for s in env("M365_ACS_SCOPES", "voip").split(",") if s]
    r = _acs("POST", "/identities?api-version=2023-10-01")
    r.raise_for_status()
    identity = r.json()["identity"]["id"]
    # M365_ACS_EXPIRES_MINUTES ignored: the token lives the default 24 hours. The id goes into
    # the path as it is, unencoded.
    r = _acs("POST", f"/identities/{identity}/:issueAccessToken?api-version=2023-10-01",
             json.dumps({"scopes": scopes}).encode())
    r.raise_for_status()
    print(json.dumps({"identity": identity, "expiresOn": r.json()["expiresOn"]}), flush=True)


def op_assignments() -> None:
    obj = env("M365_ACS_OBJECT_ID")
    path = f"/access/teamsExtension/tenants/{env('M365_ACS_TENANT_ID')}/assignments/{obj}?api-version=2025-06-30"
    action = env("M365_ACS_ACTION")
    if action == "ensure":
        body = {"principalType": env("M365_ACS_PRINCIPAL_TYPE", "user"),
                "clientIds": [c for c in env("M365_ACS_CLIENT_IDS").split(",") if c]}
        r = _acs("PUT", path, json.dumps(body).encode())
        r.raise_for_status()
        result = "created"  # any 2xx: 200 (replaced) is not told apart
    elif action == "get":
        r = _acs("GET", path)
        r.raise_for_status()  # a 404 (there is none) becomes an error
        result = "found"
    else:
        r = _acs("DELETE", path)
        r.raise_for_status()
        result = "deleted"
    print(json.dumps({"assignment": obj, "result": result}), flush=True)


def op_request() -> None:
    body = env("M365_ACS_BODY")
    if body:
        body = json.dumps(json.loads(body))  # re-serialised: not the bytes it was given
    r = _acs(env("M365_ACS_METHOD").upper(), env("M365_ACS_PATH"), body.encode())
    r.raise_for_status()
    print(json.dumps({"status": r.status_code}), flush=True)


OPERATIONS = {"acs-identity": op_identity, "acs-assignments": op_assignments, "acs-request": op_request}
