"""Office 365 Management Activity API operations: `audit-sync` and `audit-webhook`.

The drainer: windows of at most 24 hours on `contentCreated`, each poll reaching back an hour
before the previous one's end (late blobs), `NextPageUri` followed to the end, AF20022 answered
by starting the subscription, AF20024 taken as success, each blob fetched once and records
de-duplicated by `Id` across polls (the state file keeps both). Requests go through
rc_common.call (bounded retries, Retry-After, one token refresh after a 401).
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import queue
import threading
import time

from rc_common import ClientError, Tokens, call, emit, env, env_or, error_code, log, raise_for, session

SCOPE = "https://manage.office.com/.default"
MAX_WINDOW = dt.timedelta(hours=24)
OVERLAP = dt.timedelta(hours=1)


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise ClientError("client_error", f"bad time {text!r}: {e}") from e
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


class Drainer:
    def __init__(self) -> None:
        self.tokens = Tokens()
        self.http = session()
        self.feed = env("M365_MANAGEMENT_URL").rstrip("/")
        self.seen_blobs: set[str] = set()
        self.seen_records: set[str] = set()

    def _call(self, method: str, url: str, **kw):
        return call(self.http, method, url, tokens=self.tokens, scope=SCOPE, **kw)

    def start(self, content_type: str, webhook: dict | None = None) -> None:
        """/start (with a webhook when given); AF20024 (already enabled) is success too."""
        kw = {"json": {"webhook": webhook}} if webhook else {}
        resp = self._call("POST", f"{self.feed}/subscriptions/start", params={"contentType": content_type}, **kw)
        if resp.ok or error_code(resp) == "AF20024":
            return
        raise_for(resp, f"starting {content_type}")

    def drain(self, content_type: str, start: dt.datetime, end: dt.datetime) -> list[dict]:
        """New records of blobs created in [start, end), in windows of at most 24 hours."""
        records: list[dict] = []
        lo = start
        while lo < end:
            hi = min(lo + MAX_WINDOW, end)
            records.extend(self._drain_window(content_type, lo, hi))
            lo = hi
        return records

    def _drain_window(self, content_type: str, lo: dt.datetime, hi: dt.datetime) -> list[dict]:
        records: list[dict] = []
        first = (f"{self.feed}/subscriptions/content", {"contentType": content_type, "startTime": rfc3339(lo), "endTime": rfc3339(hi)})
        page: tuple[str, dict | None] | None = first
        started = False
        while page is not None:
            url, params = page
            resp = self._call("GET", url, params=params)
            if error_code(resp) == "AF20022" and not started:
                self.start(content_type)  # no subscription yet: start it, then list again
                started = True
                continue
            raise_for(resp, "listing content")
            next_uri = resp.headers.get("NextPageUri")  # requests' headers ignore case
            page = (next_uri, None) if next_uri else None
            for entry in resp.json():
                blob = self.fetch_blob(entry.get("contentId", ""), entry.get("contentUri", ""))
                if blob is not None:
                    records.extend(self.keep_new(blob))
        return records

    def fetch_blob(self, content_id: str, uri: str) -> list[dict] | None:
        """The blob's records; None when it was fetched before, or is expired or unknown
        (AF20050/AF20051: a stale listing or notification)."""
        if not content_id or not uri or content_id in self.seen_blobs:
            return None
        self.seen_blobs.add(content_id)
        resp = self._call("GET", uri)
        if error_code(resp) in ("AF20050", "AF20051"):
            return None
        raise_for(resp, f"fetching blob {content_id}")
        return resp.json()

    def keep_new(self, records: list[dict]) -> list[dict]:
        new = [r for r in records if r.get("Id") not in self.seen_records]
        self.seen_records.update(r.get("Id") for r in new)
        return new


def op_audit_sync() -> None:
    """One poll from the cursor in the state file (or M365_AUDIT_SINCE) minus an hour, to now."""
    state_path = env_or("M365_CONFORMANCE_STATE", "")
    state: dict = {}
    if state_path:
        try:
            with open(state_path, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = {}
    since = parse_time(env("M365_AUDIT_SINCE"))
    cursor = parse_time(state["cursor"]) if state.get("cursor") else since
    drainer = Drainer()
    drainer.seen_blobs = set(state.get("blobs", []))
    drainer.seen_records = set(state.get("records", []))
    now = dt.datetime.now(dt.timezone.utc)
    start = max(cursor - OVERLAP, since)
    for ct in env("M365_AUDIT_CONTENT_TYPES").split(","):
        for record in drainer.drain(ct.strip(), start, now):
            emit({"record": record.get("Id"), "contentType": ct.strip()})
    if state_path:
        with open(state_path, "w", encoding="utf-8") as f:
            json.dump({"cursor": rfc3339(now), "blobs": sorted(drainer.seen_blobs), "records": sorted(drainer.seen_records)}, f)


def _receiver(auth_id: str, events: queue.Queue) -> type[http.server.BaseHTTPRequestHandler]:
    class Receiver(http.server.BaseHTTPRequestHandler):
        """Validation answered 200; notifications trusted only with our Webhook-AuthID and
        answered at once (the blobs are fetched by the main thread)."""

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
            body = self.rfile.read(length)
            if self.headers.get("Webhook-ValidationCode") is not None:
                self._answer(200)
                events.put(("validation", None))
                return
            try:
                items = json.loads(body or b"null")
            except ValueError:
                items = None
            items = items if isinstance(items, list) else []
            sent = self.headers.get("Webhook-AuthID")
            if sent != auth_id:
                self._answer(401)
                reason = "no Webhook-AuthID header" if sent is None else f"Webhook-AuthID {sent!r} is not this subscription's"
                events.put(("rejected", ([str(i.get("contentId", "-")) for i in items if isinstance(i, dict)], reason)))
                return
            self._answer(200)
            events.put(("notification", [i for i in items if isinstance(i, dict)]))

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:  # quiet: stdout is for results
            pass

    return Receiver


def op_audit_webhook() -> None:
    host, _, port = env("M365_WEBHOOK_LISTEN").rpartition(":")
    auth_id = env("M365_WEBHOOK_AUTH_ID")
    deadline = time.monotonic() + float(env("M365_WEBHOOK_SECONDS"))
    events: queue.Queue = queue.Queue()
    server = http.server.ThreadingHTTPServer((host, int(port)), _receiver(auth_id, events))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        drainer = Drainer()
        for ct in env("M365_AUDIT_CONTENT_TYPES").split(","):
            drainer.start(ct.strip(), {"address": env("M365_WEBHOOK_ADDRESS"), "authId": auth_id})
        while (left := deadline - time.monotonic()) > 0:
            try:
                kind, payload = events.get(timeout=left)
            except queue.Empty:
                break
            if kind == "validation":
                log("webhook validated")
            elif kind == "rejected":
                ids, reason = payload
                for content_id in ids or ["-"]:
                    emit({"rejected": content_id, "reason": reason})
            else:
                for item in payload:
                    blob = drainer.fetch_blob(str(item.get("contentId", "")), str(item.get("contentUri", "")))
                    for record in drainer.keep_new(blob or []):
                        emit({"record": record.get("Id"), "contentType": item.get("contentType")})
    finally:
        server.shutdown()


OPERATIONS = {"audit-sync": op_audit_sync, "audit-webhook": op_audit_webhook}
