"""The naive client's Management Activity API operation: `audit-sync`."""

from __future__ import annotations

import datetime as dt
import json
import os

from naive_common import FLAGS, env, get, post, token

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



OPERATIONS = {"audit-sync": op_audit_sync}
