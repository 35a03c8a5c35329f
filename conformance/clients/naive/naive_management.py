"""The naive client's Management Activity API operation: `audit-sync`."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import threading
import time

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


def op_audit_webhook() -> None:
    """Starts the subscription with the webhook, then fetches whatever any notification
    names: Webhook-AuthID never looked at, nothing de-duplicated. --webhook-bad-validation:
    the validation request is answered 202 Accepted; --webhook-accepted: notifications are
    (as a queueing endpoint would)."""
    feed = env("M365_MANAGEMENT_URL")
    auth = lambda: {"Authorization": f"Bearer {token('https://manage.office.com/.default')}"}  # noqa: E731
    host, _, port = env("M365_WEBHOOK_LISTEN").rpartition(":")

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            validation = self.headers.get("Webhook-ValidationCode") is not None
            flag = "--webhook-bad-validation" if validation else "--webhook-accepted"
            self.send_response(202 if flag in FLAGS else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            if validation:
                return
            for item in json.loads(body or b"[]"):
                blob = get(item["contentUri"], headers=auth())
                if "--double-fetch" in FLAGS:
                    blob = get(item["contentUri"], headers=auth())
                for record in blob.json():
                    print(json.dumps({"record": record["Id"], "contentType": item["contentType"]}), flush=True)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, int(port)), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for ct in env("M365_AUDIT_CONTENT_TYPES").split(","):
        hook = {"address": env("M365_WEBHOOK_ADDRESS"), "authId": env("M365_WEBHOOK_AUTH_ID")}
        r = post(f"{feed}/subscriptions/start", params={"contentType": ct}, json={"webhook": hook}, headers=auth())
        r.raise_for_status()
    time.sleep(float(env("M365_WEBHOOK_SECONDS", "5")))
    server.shutdown()


OPERATIONS = {"audit-sync": op_audit_sync, "audit-webhook": op_audit_webhook}
