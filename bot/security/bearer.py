"""`Authorization: Bearer <secret>` checked in constant time (the action server's shared
secret, the REST channel's front-end token)."""
from __future__ import annotations

import hmac


def bearer_ok(header: str | None, secret: str) -> bool:
    return hmac.compare_digest((header or "").encode("utf-8", "surrogateescape"), f"Bearer {secret}".encode())
