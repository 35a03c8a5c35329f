"""The naive client's Entra operation: `token`, with no cache."""

from __future__ import annotations

import json
import time

from naive_common import env, token


def op_token() -> None:
    scope = env("M365_CONFORMANCE_SCOPE", "https://manage.office.com/.default")
    for attempt in range(1, int(env("M365_CONFORMANCE_REPEAT", "1")) + 1):
        if attempt > 1:
            time.sleep(float(env("M365_CONFORMANCE_PAUSE_SECONDS", "0") or 0))
        token(scope)  # no cache
        print(json.dumps({"token": "acquired", "attempt": attempt}), flush=True)


OPERATIONS = {"token": op_token}
