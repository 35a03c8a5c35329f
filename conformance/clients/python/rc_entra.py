"""Entra ID operation: `token` (MSAL's cache decides when a token request is needed)."""

from __future__ import annotations

import time

from rc_common import Tokens, emit, env_or


def op_token() -> None:
    scope = env_or("M365_CONFORMANCE_SCOPE", "https://manage.office.com/.default")
    repeat = int(env_or("M365_CONFORMANCE_REPEAT", "1"))
    pause = float(env_or("M365_CONFORMANCE_PAUSE_SECONDS", "0"))
    tokens = Tokens()
    for attempt in range(1, repeat + 1):
        if attempt > 1 and pause:
            time.sleep(pause)
        tokens.token(scope)
        emit({"token": "acquired", "attempt": attempt})


OPERATIONS = {"token": op_token}
