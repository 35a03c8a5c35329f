"""What the naive client's operations share: the environment, the variant flags, and its
token and HTTP habits (no cache, 429 retried at once). See naive.py.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import uuid

import requests

# The variant flags (listed in naive.py's docstring), e.g. --raise, --hot-retry, --sign-once.
FLAGS = set(sys.argv[1:])


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(token_url: str) -> str:
    """By default: `aud` = the authority host, one-hour lifetime, no thumbprint header.
    --good-assertion: a correct one (aud = the token endpoint, 10 minutes, x5t)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    pem = open(env("AZURE_CLIENT_CERTIFICATE_PATH"), "rb").read()
    key = serialization.load_pem_private_key(pem[pem.index(b"-----BEGIN PRIVATE KEY"):], password=None)
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {"aud": env("AZURE_AUTHORITY_HOST"), "iss": env("AZURE_CLIENT_ID"), "sub": env("AZURE_CLIENT_ID"),
              "jti": str(uuid.uuid4()), "nbf": now, "exp": now + 3600}
    if "--good-assertion" in FLAGS:
        cert = x509.load_pem_x509_certificate(pem)
        header["x5t"] = b64url(cert.fingerprint(hashes.SHA1()))  # noqa: S303 (the header's definition)
        claims.update({"aud": token_url, "exp": now + 600})
    digest = hashes.SHA256()
    if "--rs512" in FLAGS:  # an algorithm Entra does not take for assertions
        header["alg"], digest = "RS512", hashes.SHA512()
    if "--iss-tenant" in FLAGS:  # the tenant mistaken for the issuer
        claims["iss"] = env("AZURE_TENANT_ID")
    if "--no-jti" in FLAGS:
        del claims["jti"]
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), digest)
    return f"{signing_input}.{b64url(sig)}"


def _send(method: str, url: str, **kw) -> requests.Response:
    """429 retried once at once, whatever Retry-After says; --hot-retry: every failure
    retried at once, up to 20 times; --no-retry: nothing retried; --insecure: certificates
    not checked."""
    if "--insecure" in FLAGS:
        import urllib3

        urllib3.disable_warnings()
        kw["verify"] = False
    r = requests.request(method, url, timeout=30, **kw)
    tries = 20 if "--hot-retry" in FLAGS else 0 if "--no-retry" in FLAGS else 1
    for _ in range(tries):
        if r.status_code == 429 or ("--hot-retry" in FLAGS and r.status_code >= 400):
            r = requests.request(method, url, timeout=30, **kw)
    return r


def post(url: str, **kw) -> requests.Response:
    return _send("POST", url, **kw)


def get(url: str, **kw) -> requests.Response:
    return _send("GET", url, **kw)


_CACHE: dict = {}


def token(scope: str) -> str:
    """No cache by default; --cache-no-margin: cached until the very second it expires."""
    cached = _CACHE.get(scope)
    if "--cache-no-margin" in FLAGS and cached and time.time() < cached[1]:
        return cached[0]
    started = time.time()
    url = f"{env('AZURE_AUTHORITY_HOST')}/{env('AZURE_TENANT_ID')}/oauth2/v2.0/token"
    if "--bad-scope" in FLAGS:
        scope = scope.replace("/.default", "")
    form = {"grant_type": "client_credentials", "client_id": env("AZURE_CLIENT_ID"), "scope": scope}
    if env("AZURE_CLIENT_CERTIFICATE_PATH"):
        form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        form["client_assertion"] = assertion(url)
    else:
        form["client_secret"] = env("AZURE_CLIENT_SECRET")
    r = post(url, data=form)
    r.raise_for_status()
    body = r.json()
    _CACHE[scope] = (body["access_token"], started + int(body.get("expires_in", 0)))
    return body["access_token"]


