#!/usr/bin/env python3
"""The Python reference client: a conformance adapter (conformance/CONTRACT.md) built on the
libraries a Python team would use — MSAL Python and requests (plus azure-communication-identity
and msgraph-sdk for the services they cover), all unmodified, pinned in
tests/clients/requirements.txt.

One module per service, `rc_<service>.py` next to this file, each with an `OPERATIONS` table
(operation name -> function); `rc_common.py` holds the environment, output, MSAL and HTTP
retry policy they share. Results go to stdout as JSON lines; logs to stderr. Exit 0 on
success; on failure an `{"error": …, "message": …}` line and exit 1.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from rc_common import ClientError, emit, env_or  # noqa: E402


def operations() -> dict:
    ops = {}
    for path in sorted(HERE.glob("rc_*.py")):
        if path.stem != "rc_common":
            ops.update(importlib.import_module(path.stem).OPERATIONS)
    return ops


def main() -> int:
    ops = operations()
    op = env_or("M365_CONFORMANCE_OPERATION", "")
    if op == "describe" or "--describe" in sys.argv[1:]:
        emit({"operations": sorted(ops)})
        return 0
    if op not in ops:
        emit({"error": "client_error", "message": f"unsupported operation {op!r}"})
        return 1
    try:
        ops[op]()
    except ClientError as e:
        emit({"error": e.code, "message": str(e)})
        print(f"m365_reference_client: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
