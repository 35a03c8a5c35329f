"""The naive client's Microsoft Graph operations: `graph-meeting` and `graph-chat`.

Its habits: a new token for every call; always `POST …/onlineMeetings`, even with an external
id (a new meeting every run instead of createOrGet); the first page of chat messages only;
no retry of 5xx, a 429 retried at once (naive_common); errors swallowed (naive.py). Variants:
--graph-wrong-scope, --graph-me, --rebuild-next-link, --chat-app-only (see naive.py).
"""

from __future__ import annotations

import json
from urllib.parse import quote

from naive_common import FLAGS, env, get, post, token

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
REBUILT_PAGES = 10  # "enough pages" when the next URL is rebuilt by hand


def scope() -> str:
    """--graph-wrong-scope: the Management API's scope, copied from the audit code."""
    return "https://manage.office.com/.default" if "--graph-wrong-scope" in FLAGS else GRAPH_SCOPE


def app_auth() -> dict:
    return {"Authorization": f"Bearer {token(scope())}"}


def user_auth() -> dict:
    """A Teams user's token by the password grant; --chat-app-only: the app's own credential."""
    if "--chat-app-only" in FLAGS:
        return app_auth()
    url = f"{env('AZURE_AUTHORITY_HOST')}/{env('AZURE_TENANT_ID')}/oauth2/v2.0/token"
    r = post(url, data={"grant_type": "password", "client_id": env("AZURE_CLIENT_ID"),
                        "username": env("AZURE_USERNAME"), "password": env("AZURE_PASSWORD"),
                        "scope": scope()})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def op_graph_meeting() -> None:
    # --graph-me: /me with an app-only token (Graph answers 400).
    owner = "me" if "--graph-me" in FLAGS else f"users/{env('M365_GRAPH_USER_ID')}"
    body = {"subject": env("M365_GRAPH_MEETING_SUBJECT", "Meeting")}
    if env("M365_GRAPH_MEETING_EXTERNAL_ID"):
        body["externalId"] = env("M365_GRAPH_MEETING_EXTERNAL_ID")  # believed to de-duplicate
    r = post(f"{env('M365_GRAPH_URL')}/{owner}/onlineMeetings", json=body, headers=app_auth())
    r.raise_for_status()
    m = r.json()
    print(json.dumps({"meeting": m["id"], "joinWebUrl": m["joinWebUrl"], "result": "created"}), flush=True)


def op_graph_chat() -> None:
    url = f"{env('M365_GRAPH_URL')}/chats/{quote(env('M365_GRAPH_CHAT_ID'), safe='')}/messages"
    text = env("M365_GRAPH_CHAT_SEND")
    if text:
        r = post(url, json={"body": {"content": text}}, headers=user_auth())
        r.raise_for_status()
        print(json.dumps({"sent": r.json()["id"]}), flush=True)
    r = get(url, headers=user_auth())
    r.raise_for_status()
    page = r.json()
    messages = list(page["value"])
    if "--rebuild-next-link" in FLAGS:
        # The next page "is" $skip=<what we have>: the nextLink's $skiptoken is ignored.
        for _ in range(REBUILT_PAGES - 1):
            if "@odata.nextLink" not in page:
                break
            r = get(f"{url}?$top={len(page['value'])}&$skip={len(messages)}", headers=user_auth())
            r.raise_for_status()
            page = r.json()
            messages.extend(page["value"])
    for m in messages:  # by default the first page only
        print(json.dumps({"message": m["id"]}), flush=True)


OPERATIONS = {"graph-meeting": op_graph_meeting, "graph-chat": op_graph_chat}
