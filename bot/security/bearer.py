"""`Authorization: Bearer <secret>` checked in constant time (the action server's shared
secret, the REST channel's front-end token)."""
from __future__ import annotations

import hmac
from typing import Optional


def bearer_ok(header: Optional[str], secret: str) -> bool:
    return hmac.compare_digest((header or "").encode("utf-8", "surrogateescape"), f"Bearer {secret}".encode("utf-8"))
