"""Webhook signatures, as the Standard Webhooks spec (standardwebhooks.com) defines them.

Each delivery carries ``webhook-id`` (the same on every retry of one delivery, so receivers can
drop duplicates), ``webhook-timestamp`` (unix seconds) and, with a secret, ``webhook-signature:
v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``. A secret ``whsec_<base64>`` is the
spec's form: the key is the decoded bytes (``Webhook(secret).verify(body, headers)`` in the
``standardwebhooks`` package checks it). A secret without the prefix (what
``ANYPOD_WEBHOOK_SECRET`` held before) is used as raw UTF-8 key bytes; receivers verify it with
``Webhook(secret.encode())``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from anypod import errors

PREFIX = "whsec_"


def key(secret: str, *, source: str = "webhook secret") -> bytes:
    """The HMAC key a configured secret stands for; ConfigError naming ``source`` if unusable."""
    if not secret.startswith(PREFIX):
        raw = secret.encode()
    else:
        encoded = secret.removeprefix(PREFIX)
        try:
            raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            raise errors.ConfigError(f"{source}: {PREFIX}… must be followed by base64") from None
    if not raw:
        raise errors.ConfigError(f"{source} is empty")
    return raw


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(msg_id: str, timestamp: int, body: bytes, key: bytes | None) -> dict[str, str]:
    """The Standard Webhooks headers of one delivery (no signature without a key)."""
    found = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if key is not None:
        found["webhook-signature"] = signature(key, msg_id, timestamp, body)
    return found
