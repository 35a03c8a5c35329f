"""Microsoft Graph operations on MSAL + requests:

- `graph-meeting`: an online meeting for M365_GRAPH_USER_ID with the app-only credential;
  with M365_GRAPH_MEETING_EXTERNAL_ID, `createOrGet` (201 created, 200 existing), so that a
  repeated run never duplicates the meeting.
- `graph-chat`: as the Teams user AZURE_USERNAME (MSAL's public client, password grant, tokens
  from MSAL's cache), post M365_GRAPH_CHAT_SEND, then every message of the chat, following
  each `@odata.nextLink` exactly as given.

Graph errors are reported with Graph's `error.code` (`Forbidden`, `TooManyRequests`, …); the
retry policy is rc_common's.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import msal

from rc_common import ClientError, RecordingSession, Tokens, call, emit, env, env_or, raise_for, session

SCOPE = "https://graph.microsoft.com/.default"
# A Teams user's delegated permission, named the way Entra answers it (unqualified scopes are
# Graph's): MSAL finds a cached token only when the requested scopes are among those the
# token response names, which `.default` never is.
USER_SCOPES = ["Chat.ReadWrite"]
PAGE_SIZE = 50  # Graph's maximum $top for chat messages
MAX_PAGES = 1000  # a safety stop for a nextLink that never ends


class _UserRealmOnAuthorityPort(RecordingSession):
    """MSAL sends user-realm discovery to the authority's host name without its port
    (`https://{hostname}/common/userrealm/…`); an authority on another port (the emulator's)
    gets it on that port."""

    def __init__(self, authority_host: str) -> None:
        super().__init__()
        self.authority = urlsplit(authority_host)

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        parts = urlsplit(url)
        if (parts.path.startswith("/common/userrealm/") and parts.port is None
                and parts.hostname == self.authority.hostname):
            url = urlunsplit(parts._replace(netloc=self.authority.netloc))
        return super().request(method, url, *args, **kwargs)


class UserTokens:
    """Delegated tokens for one Teams user from MSAL's public client (password grant) for
    USER_SCOPES, served from MSAL's cache (and its refresh token) while they are valid."""

    def __init__(self) -> None:
        host = env("AZURE_AUTHORITY_HOST").rstrip("/")
        self.username = env("AZURE_USERNAME")
        self.password = env("AZURE_PASSWORD")
        self.http = _UserRealmOnAuthorityPort(host)
        self.app = msal.PublicClientApplication(
            env("AZURE_CLIENT_ID"),
            authority=f"{host}/{env('AZURE_TENANT_ID')}",
            instance_discovery=False,
            http_client=self.http,
        )

    def token(self, scope: str, force_refresh: bool = False) -> str:
        """`scope` (Graph's `.default`, from rc_common.call) stands for USER_SCOPES."""
        result = None
        accounts = self.app.get_accounts(username=self.username)
        if accounts:
            result = self.app.acquire_token_silent(USER_SCOPES, account=accounts[0], force_refresh=force_refresh)
        if not result or "access_token" not in result:
            result = self.app.acquire_token_by_username_password(self.username, self.password, scopes=USER_SCOPES)
        if "access_token" in result:
            return result["access_token"]
        codes = result.get("error_codes") or []
        code = f"AADSTS{codes[0]}" if codes else str(result.get("error"))
        raise ClientError(code, str(result.get("error_description", result)))


def graph_base() -> str:
    return env("M365_GRAPH_URL").rstrip("/")


def op_graph_meeting() -> None:
    tokens, http = Tokens(), session()
    user = quote(env("M365_GRAPH_USER_ID"), safe="")
    subject = env_or("M365_GRAPH_MEETING_SUBJECT", "Meeting")
    external_id = env_or("M365_GRAPH_MEETING_EXTERNAL_ID", "")
    if external_id:
        url = f"{graph_base()}/users/{user}/onlineMeetings/createOrGet"
        body = {"externalId": external_id, "subject": subject}
    else:
        url = f"{graph_base()}/users/{user}/onlineMeetings"
        body = {"subject": subject}
    resp = call(http, "POST", url, tokens, SCOPE, json=body)
    raise_for(resp, "online meeting")
    meeting = resp.json()
    emit({
        "meeting": meeting["id"],
        "joinWebUrl": meeting.get("joinWebUrl"),
        "result": "created" if resp.status_code == 201 else "existing",
    })


def op_graph_chat() -> None:
    tokens = UserTokens() if env_or("AZURE_USERNAME", "") else Tokens()
    http = session()
    url = f"{graph_base()}/chats/{quote(env('M365_GRAPH_CHAT_ID'), safe='')}/messages"
    text = env_or("M365_GRAPH_CHAT_SEND", "")
    if text:
        resp = call(http, "POST", url, tokens, SCOPE, json={"body": {"contentType": "text", "content": text}})
        raise_for(resp, "send chat message")
        emit({"sent": resp.json()["id"]})
    next_url: str | None = f"{url}?$top={PAGE_SIZE}"
    pages = 0
    while next_url:
        pages += 1
        if pages > MAX_PAGES:
            raise ClientError("TooManyPages", f"more than {MAX_PAGES} pages of chat messages")
        resp = call(http, "GET", next_url, tokens, SCOPE)
        raise_for(resp, "list chat messages")
        page = resp.json()
        for message in page.get("value", []):
            emit({"message": message["id"]})
        next_url = page.get("@odata.nextLink")  # exactly as given: its $skiptoken is opaque


OPERATIONS = {"graph-meeting": op_graph_meeting, "graph-chat": op_graph_chat}
