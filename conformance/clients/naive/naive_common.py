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

FLAGS = set(sys.argv[1:])


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(token_url: str) -> str:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    pem = open(env("AZURE_CLIENT_CERTIFICATE_PATH"), "rb").read()
    key = serialization.load_pem_private_key(pem[pem.index(b"-----BEGIN PRIVATE KEY"):], password=None)
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {"aud": env("AZURE_AUTHORITY_HOST"), "iss": env("AZURE_CLIENT_ID"), "sub": env("AZURE_CLIENT_ID"),
              "jti": str(uuid.uuid4()), "nbf": now, "exp": now + 3600}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(sig)}"


def post(url: str, **kw) -> requests.Response:
    r = requests.post(url, timeout=30, **kw)
    if r.status_code == 429:  # retry at once, whatever Retry-After says
        r = requests.post(url, timeout=30, **kw)
    return r


def get(url: str, **kw) -> requests.Response:
    r = requests.get(url, timeout=30, **kw)
    if r.status_code == 429:
        r = requests.get(url, timeout=30, **kw)
    return r


def token(scope: str) -> str:
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
    return r.json()["access_token"]


