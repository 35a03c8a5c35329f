"""The naive client's Entra operation: `token`, with no cache."""

from __future__ import annotations

import json

from naive_common import env, token

def op_token() -> None:
    scope = env("M365_CONFORMANCE_SCOPE", "https://manage.office.com/.default")
    for attempt in range(1, int(env("M365_CONFORMANCE_REPEAT", "1")) + 1):
        token(scope)  # no cache
        print(json.dumps({"token": "acquired", "attempt": attempt}), flush=True)



OPERATIONS = {"token": op_token}
