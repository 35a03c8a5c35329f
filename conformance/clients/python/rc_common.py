"""What the Python reference client's operations share: contract variables, output lines,
the MSAL confidential client (with its token cache) and one HTTP retry policy.

Retry policy (the one the conformance suite checks): 429, 5xx and the Management API's
AF429/AF50000 are retried — after Retry-After when the answer has one, else after an
exponential backoff from 0.25 s; connection errors back off too; at most MAX_ATTEMPTS
attempts; any other 4xx is final and raised with the service's error code. A 401 from a
resource drops the cached token once and retries with a new one.
"""

from __future__ import annotations

import json
import os
import sys
import time

import msal
import requests

MAX_ATTEMPTS = 5
# Token requests: MSAL holds a 5xx without Retry-After for 5 s (its ThrottledHttpClient),
# answering from memory meanwhile, so each retry waits that long; three attempts bound it.
TOKEN_ATTEMPTS = 3
MSAL_5XX_HOLD = 5.0
HTTP_TIMEOUT = 30


class ClientError(Exception):
    """A failure the client reports: `code` is the service's error code when there is one."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ClientError("client_error", f"{name} is not set")
    return value


def env_or(name: str, default: str) -> str:
    return os.environ.get(name, "") or default


def emit(line: dict) -> None:
    print(json.dumps(line), flush=True)


def log(message: str) -> None:
    print(f"m365_reference_client: {message}", file=sys.stderr, flush=True)


def ca_bundle() -> str | bool:
    """The emulator's CA (the contract sets SSL_CERT_FILE / REQUESTS_CA_BUNDLE)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or True


def error_code(resp: requests.Response) -> str:
    """The service's error code from an error body (Entra, Management, ACS, Graph shapes)."""
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP{resp.status_code}"
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("code") or f"HTTP{resp.status_code}")
        if isinstance(err, str):
            codes = body.get("error_codes") or []
            return f"AADSTS{codes[0]}" if codes else err
    return f"HTTP{resp.status_code}"


def backoff(attempt: int) -> float:
    """Exponential backoff before attempt `attempt + 1`: 0.25 s, 0.5 s, 1 s, 2 s."""
    return 0.25 * 2 ** (attempt - 1)


def retry_delay(resp: requests.Response | None, attempt: int) -> float | None:
    """Seconds to wait before the next attempt, or None when the answer is final."""
    if resp is None:
        return backoff(attempt)
    retryable = (
        resp.status_code == 429
        or resp.status_code >= 500
        or (resp.status_code == 400 and error_code(resp) == "AF50000")  # Management: internal
        or (resp.status_code == 403 and error_code(resp) == "AF429")  # Management: throttled
    )
    if not retryable:
        return None
    try:
        return max(float(resp.headers["Retry-After"]), 0.0)
    except (KeyError, ValueError):
        return backoff(attempt)


class RecordingSession(requests.Session):
    """requests.Session that remembers the last response and when it arrived, so that the
    caller of MSAL (which returns only an error dict) can still honour its Retry-After."""

    def __init__(self) -> None:
        super().__init__()
        self.verify = ca_bundle()
        self.trust_env = False  # no proxies from the caller's environment
        self.last_response: requests.Response | None = None
        self.last_arrival = 0.0

    def request(self, *args, **kwargs):  # type: ignore[override]
        resp = super().request(*args, **kwargs)
        self.last_response, self.last_arrival = resp, time.monotonic()
        return resp


def session() -> RecordingSession:
    """An HTTP session that trusts the emulator's CA and ignores proxy variables."""
    return RecordingSession()


class Tokens:
    """App-only tokens from MSAL's confidential client: the credential comes from
    AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH (certificate and key in one PEM, sent
    as PS256 with x5t#S256), the authority from AZURE_AUTHORITY_HOST. MSAL serves repeated
    requests from its cache and refreshes tokens that are about to expire."""

    def __init__(self) -> None:
        authority = f"{env('AZURE_AUTHORITY_HOST').rstrip('/')}/{env('AZURE_TENANT_ID')}"
        cert_path = env_or("AZURE_CLIENT_CERTIFICATE_PATH", "")
        if cert_path:
            pem = open(cert_path, encoding="ascii").read()
            key_at = pem.index("-----BEGIN PRIVATE KEY")
            credential: object = {"private_key": pem[key_at:], "public_certificate": pem[:key_at]}
        else:
            credential = env("AZURE_CLIENT_SECRET")
        self.http = RecordingSession()
        self.app = msal.ConfidentialClientApplication(
            env("AZURE_CLIENT_ID"),
            client_credential=credential,
            authority=authority,
            instance_discovery=False,
            http_client=self.http,
        )

    def token(self, scope: str, force_refresh: bool = False) -> str:
        """A token for `scope`. A 429 or 5xx from Entra is retried as the policy says, waiting
        for Retry-After from the moment that answer arrived; anything else is final."""
        for attempt in range(1, TOKEN_ATTEMPTS + 1):
            if force_refresh:
                self._forget(scope)
            self.http.last_response = None
            try:
                result = self.app.acquire_token_for_client(scopes=[scope])
            except msal.exceptions.MsalServiceError as e:  # MSAL raises on some 5xx
                result = {"error": "server_error", "error_description": str(e)}
            if "access_token" in result:
                return result["access_token"]
            last = self.http.last_response
            codes = result.get("error_codes") or []
            code = f"AADSTS{codes[0]}" if codes else (error_code(last) if last is not None else str(result.get("error")))
            if last is not None:
                delay = retry_delay(last, attempt)
                if delay is not None and "Retry-After" not in last.headers:
                    delay = max(delay, MSAL_5XX_HOLD)
            else:  # MSAL answered from its own throttling memory, without a request
                transient = result.get("error") in ("temporarily_unavailable", "server_error")
                delay = backoff(attempt) if transient else None
            if delay is None or attempt == TOKEN_ATTEMPTS:
                raise ClientError(code, str(result.get("error_description", result)))
            wait = self.http.last_arrival + delay - time.monotonic()
            log(f"token request failed ({code}), attempt {attempt}; retrying in {max(wait, 0):.2f} s")
            time.sleep(max(wait, 0.0))
        raise ClientError("client_error", "unreachable")

    def _forget(self, scope: str) -> None:
        # A list first: removing while MSAL iterates its cache raises RuntimeError.
        for at in list(self.app.token_cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            if scope.rsplit("/", 1)[0] in at.get("target", ""):
                self.app.token_cache.remove_at(at)


def call(http: requests.Session, method: str, url: str, tokens: Tokens | None = None,
         scope: str = "", headers: dict | None = None, **kw) -> requests.Response:
    """One request under the retry policy; with `tokens`, a bearer token for `scope` (a 401
    drops the cached token once and retries). Returns the final response (2xx, or a 4xx the
    caller interprets); raises ClientError when retries are exhausted."""
    refreshed = False
    attempt = 0
    while True:
        attempt += 1
        sent = dict(headers or {})
        if tokens is not None:
            sent["Authorization"] = f"Bearer {tokens.token(scope)}"
        try:
            resp = http.request(method, url, headers=sent, timeout=HTTP_TIMEOUT, **kw)
        except requests.RequestException as e:
            resp = None
            log(f"{method} {url}: {e}")
        if resp is not None and resp.status_code == 401 and tokens is not None and not refreshed:
            refreshed = True  # an expired or revoked token: one new token, one more try
            tokens.token(scope, force_refresh=True)
            attempt -= 1
            continue
        delay = retry_delay(resp, attempt)
        if delay is None and resp is not None:
            return resp
        if attempt >= MAX_ATTEMPTS:
            code = error_code(resp) if resp is not None else "connection_error"
            raise ClientError(code, f"{method} {url}: gave up after {attempt} attempts")
        status = resp.status_code if resp is not None else "no answer"
        log(f"{method} {url}: {status}; waiting {delay:.1f} s")
        time.sleep(delay or 0.0)


def raise_for(resp: requests.Response, what: str) -> None:
    """A non-2xx final answer becomes a ClientError with the service's code."""
    if resp.status_code >= 400:
        raise ClientError(error_code(resp), f"{what}: HTTP {resp.status_code}: {resp.text[:300]}")
