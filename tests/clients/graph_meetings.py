#!/usr/bin/env python3
"""Online meetings with the real, unmodified msgraph-sdk against the emulator.

Run by emulator/tests/graph_clients.rs (through scripts/test.sh, which installs the pinned
msgraph-sdk of tests/clients/requirements.txt). The Rust test first grants an application
access policy for the covered user. Inputs, all from the environment:

  M365EMU_HTTPS_URL      emulator HTTPS base URL (authority for azure-identity, Graph base URL)
  M365EMU_TENANT_ID      tenant GUID
  M365EMU_CLIENT_ID      the Teams-phone backend app (OnlineMeetings.ReadWrite.All)
  M365EMU_CLIENT_SECRET  its secret
  M365EMU_COVERED_USER   a user the app's policy covers
  M365EMU_UNCOVERED_USER a user it does not cover
  SSL_CERT_FILE / REQUESTS_CA_BUNDLE  the emulator's CA

The Graph client is built the SDK's way (GraphClientFactory's default middleware, an
AzureIdentityAuthenticationProvider around ClientSecretCredential, GraphRequestAdapter); the
only changes are the base URL and an httpx client that trusts the emulator's CA.

Cases:
  covered    users/{covered}/onlineMeetings.post -> an OnlineMeeting with join URL and chat
  uncovered  users/{uncovered}/onlineMeetings.post -> ODataError 403 the SDK surfaces
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from datetime import datetime, timedelta, timezone

import httpx
import msgraph
from azure.identity.aio import ClientSecretCredential
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.online_meeting import OnlineMeeting
from msgraph_core import GraphClientFactory

from common import check, env, print_versions, run_case

SCOPES = ["https://graph.microsoft.com/.default"]


def build_client(https_url: str, credential) -> GraphServiceClient:
    ca = env("SSL_CERT_FILE")
    tls = ssl.create_default_context(cafile=ca)
    http_client = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=tls, timeout=30, trust_env=False)
    )
    auth = AzureIdentityAuthenticationProvider(credential, scopes=SCOPES)
    adapter = GraphRequestAdapter(auth, client=http_client)
    adapter.base_url = f"{https_url}/v1.0"
    return GraphServiceClient(request_adapter=adapter)


def meeting(subject: str) -> OnlineMeeting:
    start = datetime(2030, 1, 1, 10, 0, tzinfo=timezone.utc)
    return OnlineMeeting(subject=subject, start_date_time=start, end_date_time=start + timedelta(hours=1))


async def main() -> int:
    https_url = env("M365EMU_HTTPS_URL")
    credential = ClientSecretCredential(
        env("M365EMU_TENANT_ID"),
        env("M365EMU_CLIENT_ID"),
        env("M365EMU_CLIENT_SECRET"),
        authority=https_url,
        disable_instance_discovery=True,
    )
    client = build_client(https_url, credential)
    covered, uncovered = env("M365EMU_COVERED_USER"), env("M365EMU_UNCOVERED_USER")
    results = {}

    async def covered_case(out: dict) -> None:
        checks = out["checks"]
        m = await client.users.by_user_id(covered).online_meetings.post(meeting("Daemon sync"))
        check(checks, "returned", m is not None, "no meeting")
        check(checks, "subject", m.subject == "Daemon sync", f"subject {m.subject!r}")
        check(checks, "join_url", bool(m.join_web_url) and m.join_web_url.startswith("https://teams.microsoft.com/l/meetup-join/"),
              f"joinWebUrl {m.join_web_url!r}")
        thread = m.chat_info.thread_id if m.chat_info else None
        check(checks, "thread_id", bool(thread) and thread.startswith("19:meeting_"), f"threadId {thread!r}")
        passcode = m.join_meeting_id_settings.passcode if m.join_meeting_id_settings else None
        check(checks, "passcode", bool(passcode), f"passcode {passcode!r}")
        check(checks, "start", m.start_date_time == datetime(2030, 1, 1, 10, 0, tzinfo=timezone.utc),
              f"start {m.start_date_time!r}")
        out["meeting_id"] = m.id

    async def uncovered_case(out: dict) -> None:
        checks = out["checks"]
        try:
            await client.users.by_user_id(uncovered).online_meetings.post(meeting("Denied"))
        except ODataError as e:
            status = e.response_status_code
            code = e.error.code if e.error else None
            message = e.error.message if e.error else None
            out.update(status=status, code=code, message=message)
            check(checks, "status_403", status == 403, f"status {status!r}")
            check(checks, "code", code == "Forbidden", f"code {code!r}")
            check(checks, "message", message == "No Application Access Policy found for this app", f"message {message!r}")
            return
        check(checks, "raised", False, "the SDK returned a meeting for an uncovered user")

    for name, case in (("covered", covered_case), ("uncovered", uncovered_case)):
        out = {"case": name, "ok": False, "checks": {}}
        results[name] = await _run_async_case(out, case)
    await credential.close()
    failed = {k: v for k, v in results.items() if v}
    if failed:
        print(f"graph_meetings.py: FAILED {failed}", file=sys.stderr)
        return 1
    print("graph_meetings.py: all 2 cases passed", file=sys.stderr)
    return 0


async def _run_async_case(out: dict, case) -> str | None:
    """`common.run_case` for a coroutine: prints the case's JSON line, returns why it failed."""
    done = {}
    try:
        await case(out)
        done["ok"] = True
    except Exception as e:  # reported through run_case below, with the same line format
        done["error"] = e

    def replay(o: dict) -> None:
        if "error" in done:
            raise done["error"]

    return run_case(out, replay)


if __name__ == "__main__":
    print_versions({"msgraph": msgraph} if hasattr(msgraph, "__version__") else {})
    sys.exit(asyncio.run(main()))
