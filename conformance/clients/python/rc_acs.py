"""Azure Communication Services operations: `acs-identity`, `acs-assignments`, `acs-request`.

Identity goes through the unmodified azure-communication-identity SDK. The assignment API
has no SDK (reference §1.3), so those calls go through an azure-core pipeline built the way the
SDK builds its own: the SDK's HMAC policy (`HMACCredentialsPolicy`, which signs whatever request
passes through it: the raw path and query, the body's SHA-256, a fresh x-ms-date) or azure-core's
bearer policy, placed after the retry policy so that every attempt is signed afresh.

Retries: azure-core's RetryPolicy (429, 408, 500, 502-504; Retry-After honoured), except that
its first retry does not wait — ACS_RETRY backs off from the first retry on, at most
ACS_ATTEMPTS attempts. M365_ACS_AUTH=entra uses azure-identity's credential from AZURE_*.
"""

from __future__ import annotations

import datetime
import json

from azure.communication.identity import CommunicationIdentityClient
from azure.communication.identity._shared.policy import HMACCredentialsPolicy
from azure.communication.identity._shared.utils import parse_connection_str
from azure.core import PipelineClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
from azure.core.rest import HttpRequest

from rc_common import ClientError, emit, env, env_or, log

TPE_API_VERSION = "2025-06-30"
# The scope both ACS SDKs ask for (sic: the double slash).
ACS_SCOPE = "https://communication.azure.com//.default"
ACS_ATTEMPTS = 5
FIRST_BACKOFF = 0.25


class BackoffRetryPolicy(RetryPolicy):
    """azure-core's RetryPolicy, but waiting before the first retry too (azure-core retries
    the first failure at once): FIRST_BACKOFF, doubled per attempt, when there is no
    Retry-After."""

    def get_backoff_time(self, settings):
        attempts = len(settings["history"])
        return min(settings["max_backoff"], FIRST_BACKOFF * 2 ** max(attempts - 1, 0))


def retry_policy() -> RetryPolicy:
    return BackoffRetryPolicy(retry_total=ACS_ATTEMPTS - 1, retry_backoff_factor=FIRST_BACKOFF)


def auth_mode() -> str:
    mode = env_or("M365_ACS_AUTH", "hmac")
    if mode not in ("hmac", "entra"):
        raise ClientError("client_error", f"M365_ACS_AUTH={mode!r} is neither hmac nor entra")
    return mode


def entra_credential():
    """azure-identity's credential for the AZURE_* application, against the authority host."""
    from azure.identity import CertificateCredential, ClientSecretCredential

    common = {"authority": env("AZURE_AUTHORITY_HOST"), "disable_instance_discovery": True}
    cert = env_or("AZURE_CLIENT_CERTIFICATE_PATH", "")
    if cert:
        return CertificateCredential(env("AZURE_TENANT_ID"), env("AZURE_CLIENT_ID"),
                                     certificate_path=cert, **common)
    return ClientSecretCredential(env("AZURE_TENANT_ID"), env("AZURE_CLIENT_ID"),
                                  env("AZURE_CLIENT_SECRET"), **common)


def error_code_of(e: HttpResponseError) -> str:
    """ACS's `error.code` from the exception's response."""
    try:
        return str(e.response.json()["error"]["code"])
    except (AttributeError, KeyError, TypeError, ValueError):
        status = getattr(e, "status_code", None)
        return f"HTTP{status}" if status else "client_error"


def pipeline() -> tuple[PipelineClient, str]:
    """An azure-core pipeline to the ACS endpoint with the contract's authentication."""
    if auth_mode() == "entra":
        endpoint = env("ACS_ENDPOINT").rstrip("/")
        auth = BearerTokenCredentialPolicy(entra_credential(), ACS_SCOPE)
    else:
        try:
            host, key = parse_connection_str(env("ACS_CONNECTION_STRING"))
        except ValueError as e:
            raise ClientError("client_error", f"ACS_CONNECTION_STRING: {e}") from e
        endpoint = f"https://{host}"
        auth = HMACCredentialsPolicy(endpoint, AzureKeyCredential(key))
    # Retry before authentication: each attempt passes through the signer again.
    policies = [retry_policy(), auth]
    return PipelineClient(base_url=endpoint, policies=policies), endpoint


def send(method: str, path_and_query: str, body: str | None = None):
    """One request, sent and signed exactly as given; returns the final response."""
    client, endpoint = pipeline()
    headers = {"Accept": "application/json"}
    if body:
        headers["Content-Type"] = "application/json"
    request = HttpRequest(method, endpoint + path_and_query, headers=headers,
                          content=body or None)  # str: the HMAC policy hashes its UTF-8
    try:
        return client.send_request(request)
    except AzureError as e:
        raise ClientError("connection_error", f"{method} {path_and_query}: {e}") from e


def response_code(resp) -> str:
    try:
        return str(resp.json()["error"]["code"])
    except (KeyError, TypeError, ValueError):
        return f"HTTP{resp.status_code}"


def op_identity() -> None:
    scopes = [s.strip() for s in env_or("M365_ACS_SCOPES", "voip").split(",") if s.strip()]
    minutes = env_or("M365_ACS_EXPIRES_MINUTES", "")
    kwargs = {"retry_policy": retry_policy()}
    if auth_mode() == "entra":
        client = CommunicationIdentityClient(env("ACS_ENDPOINT"), entra_credential(), **kwargs)
    else:
        try:
            client = CommunicationIdentityClient.from_connection_string(env("ACS_CONNECTION_STRING"), **kwargs)
        except ValueError as e:
            raise ClientError("client_error", f"ACS_CONNECTION_STRING: {e}") from e
    token_kwargs = {}
    if minutes:
        if not minutes.isdigit():
            raise ClientError("client_error", f"M365_ACS_EXPIRES_MINUTES={minutes!r} is not a number")
        token_kwargs["token_expires_in"] = datetime.timedelta(minutes=int(minutes))
    try:
        user = client.create_user()
        token = client.get_token(user, scopes, **token_kwargs)
    except HttpResponseError as e:
        raise ClientError(error_code_of(e), str(e)) from e
    except AzureError as e:
        raise ClientError("connection_error", str(e)) from e
    expires = token.expires_on
    if isinstance(expires, (int, float)):
        expires = datetime.datetime.fromtimestamp(expires, datetime.timezone.utc)
    if isinstance(expires, datetime.datetime):
        expires = expires.isoformat()
    emit({"identity": user.properties["id"], "expiresOn": str(expires)})


def op_assignments() -> None:
    tenant, obj = env("M365_ACS_TENANT_ID"), env("M365_ACS_OBJECT_ID")
    path = f"/access/teamsExtension/tenants/{tenant}/assignments/{obj}?api-version={TPE_API_VERSION}"
    action = env("M365_ACS_ACTION")
    if action == "ensure":
        body = {"principalType": env_or("M365_ACS_PRINCIPAL_TYPE", "user")}
        ids = [c.strip() for c in env_or("M365_ACS_CLIENT_IDS", "").split(",") if c.strip()]
        if ids:
            body["clientIds"] = ids
        resp = send("PUT", path, json.dumps(body))
        results = {201: "created", 200: "replaced"}
    elif action == "get":
        resp = send("GET", path)
        results = {200: "found", 404: "absent"}  # a 404 is the answer "there is none"
    elif action == "delete":
        resp = send("DELETE", path)
        results = {204: "deleted", 200: "deleted"}
    else:
        raise ClientError("client_error", f"M365_ACS_ACTION={action!r} is not ensure, get or delete")
    if resp.status_code not in results:
        raise ClientError(response_code(resp), f"{action}: HTTP {resp.status_code}: {resp.text()[:300]}")
    emit({"assignment": obj, "result": results[resp.status_code]})


def op_request() -> None:
    method = env("M365_ACS_METHOD").upper()
    path = env("M365_ACS_PATH")
    if not path.startswith("/"):
        raise ClientError("client_error", f"M365_ACS_PATH={path!r} does not start with '/'")
    resp = send(method, path, env_or("M365_ACS_BODY", "") or None)
    line = {"status": resp.status_code}
    if resp.status_code >= 400:
        line["error"] = response_code(resp)
        log(f"{method} {path}: HTTP {resp.status_code}")
    emit(line)


OPERATIONS = {"acs-identity": op_identity, "acs-assignments": op_assignments, "acs-request": op_request}
