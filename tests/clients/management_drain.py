#!/usr/bin/env python3
"""A Management Activity API collector built on the real, unmodified MSAL Python and
`requests`, as SIEM connectors write them: app-only token, start subscriptions (tolerating
AF20024), then for each content type list content in windows of at most 24 hours, follow
`NextPageUri` to the end, and fetch every blob.

Run by emulator/tests/management_clients.rs. Inputs, all from the environment:

  M365EMU_HTTPS_URL      emulator HTTPS base URL (authority host and Management API root)
  M365EMU_TENANT_ID      tenant GUID
  M365EMU_CLIENT_ID      application (client) id
  M365EMU_CLIENT_SECRET  its client secret
  M365EMU_CONTENT_TYPES  comma-separated content types to drain
  M365EMU_WINDOW_START   start of the drain, ISO 8601 (UTC)
  M365EMU_WINDOW_HOURS   length of the drain in hours (split into <= 24-hour windows)
  REQUESTS_CA_BUNDLE     the emulator's CA certificate

Output (stdout), one JSON object per line: {"versions": …}, then {"record": Id,
"contentId": …, "contentType": …} for every record of every blob fetched (no de-duplication:
the caller checks "exactly once"), then {"summary": {pages, blobs, records, tokens}}.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

import msal
import requests

from common import HTTP_TIMEOUT, env, print_versions

RESOURCE = "https://manage.office.com"


def main() -> int:
    base = env("M365EMU_HTTPS_URL")
    tenant = env("M365EMU_TENANT_ID")
    app = msal.ConfidentialClientApplication(
        env("M365EMU_CLIENT_ID"),
        client_credential=env("M365EMU_CLIENT_SECRET"),
        authority=f"{base}/{tenant}",
        # The emulator is not a known Microsoft cloud: no instance discovery.
        instance_discovery=False,
    )
    print_versions({"msal": msal, "requests": requests})
    session = requests.Session()
    stats = {"pages": 0, "blobs": 0, "records": 0, "tokens": 0}

    def headers() -> dict:
        result = app.acquire_token_for_client(scopes=[f"{RESOURCE}/.default"])
        if "access_token" not in result:
            raise SystemExit(f"no token: {result.get('error')}: {result.get('error_description')}")
        if result.get("token_source") == "identity_provider":
            stats["tokens"] += 1
        return {"Authorization": f"Bearer {result['access_token']}"}

    root = f"{base}/api/v1.0/{tenant}/activity/feed"
    content_types = env("M365EMU_CONTENT_TYPES").split(",")
    for ct in content_types:
        r = session.post(f"{root}/subscriptions/start", params={"contentType": ct}, headers=headers(), timeout=HTTP_TIMEOUT)
        if r.status_code == 400 and r.json().get("error", {}).get("code") == "AF20024":
            continue  # already enabled
        r.raise_for_status()

    start = dt.datetime.fromisoformat(env("M365EMU_WINDOW_START").replace("Z", "+00:00"))
    end = start + dt.timedelta(hours=int(env("M365EMU_WINDOW_HOURS")))
    fmt = "%Y-%m-%dT%H:%M:%S"
    for ct in content_types:
        lo = start
        while lo < end:
            hi = min(lo + dt.timedelta(hours=24), end)
            url = f"{root}/subscriptions/content"
            params = {"contentType": ct, "startTime": lo.strftime(fmt), "endTime": hi.strftime(fmt)}
            while url:
                r = session.get(url, params=params, headers=headers(), timeout=HTTP_TIMEOUT)
                r.raise_for_status()
                stats["pages"] += 1
                for entry in r.json():
                    blob = session.get(entry["contentUri"], headers=headers(), timeout=HTTP_TIMEOUT)
                    blob.raise_for_status()
                    stats["blobs"] += 1
                    for record in blob.json():
                        stats["records"] += 1
                        print(json.dumps({"record": record["Id"], "contentId": entry["contentId"], "contentType": entry["contentType"]}))
                # requests' headers are case-insensitive; the URI carries every parameter.
                url, params = r.headers.get("NextPageUri"), None
            lo = hi
    print(json.dumps({"summary": stats}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
