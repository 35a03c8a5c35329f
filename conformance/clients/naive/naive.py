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
  * the webhook (audit-webhook): Webhook-AuthID never checked, every named blob fetched,
    nothing de-duplicated; --webhook-bad-validation answers the validation request 202,
    --webhook-accepted answers notifications 202;
  * certificate assertions: `aud` = the authority host, one-hour lifetime, no thumbprint
    (--good-assertion: correct ones; on top of it --rs512 signs RS512, --iss-tenant puts the
    tenant in `iss`, --no-jti leaves `jti` out);
  * --bad-scope: asks for the resource without `/.default`;
  * --cache-no-margin: caches tokens but uses them up to the second they expire;
  * --hot-retry: retries 429 and 5xx at once, up to 20 times; --no-retry: retries nothing;
  * --insecure: does not check server certificates;
  * Microsoft Graph: a new token per call, `POST …/onlineMeetings` even with an external id
    (no createOrGet: a duplicate meeting every run), the first page of chat messages only;
    --graph-wrong-scope: asks for the Management API's scope instead of Graph's;
    --graph-me: creates meetings at `/me/onlineMeetings` with an app-only token;
    --rebuild-next-link: pages with `$skip` it computes instead of following `@odata.nextLink`;
    --chat-app-only: posts chat messages with the app's own credential, not the user's token;
  * ACS (naive_acs.py): its own HMAC signer over the percent-decoded path and query, JSON
    bodies re-serialised, any 2xx PUT reported as created, a 404 after delete an error, the
    requested token lifetime ignored, no token cache with Entra; --sign-path-only: signs the
    path without the query; --hash-empty: x-ms-content-sha256 is always the empty body's hash;
    --iso-date: x-ms-date in ISO 8601 instead of RFC 1123; --sign-once: retries 429/5xx after
    Retry-After but replays the headers signed for the first attempt (a stale x-ms-date);
    --reencode-query: passes the query as `params=`, so it arrives re-encoded; --hmac-always:
    signs with the access key even when told to use Entra (M365_ACS_AUTH=entra).

Uses only `requests` and `cryptography` (both in the test virtualenv). One module per
service, `naive_<service>.py` next to this file, each with an `OPERATIONS` table; flags are
shared (naive_common.FLAGS).
"""

from __future__ import annotations

import importlib
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from naive_common import FLAGS, env  # noqa: E402


def operations() -> dict:
    ops = {}
    for path in sorted(HERE.glob("naive_*.py")):
        if path.stem != "naive_common":
            ops.update(importlib.import_module(path.stem).OPERATIONS)
    return ops


def main() -> int:
    ops = operations()
    op = env("M365_CONFORMANCE_OPERATION")
    if op == "describe":
        print(json.dumps({"operations": sorted(ops)}))
        return 0
    try:
        ops[op]()
    except Exception as e:  # swallowed: the caller never learns
        if "--raise" in FLAGS:
            raise
        print(f"naive: ignoring {e!r}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
