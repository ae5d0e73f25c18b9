"""The widget's Socket.IO session ids and the links signed for a session: an HMAC under the
server secret (QC_SESSION_SECRET, else QC_RASA_TOKEN, else one made when the process starts).
No framework imports: used by the Socket.IO channel (Rasa) and the widget's web server."""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from typing import Any

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
SECRET_ENV = "QC_SESSION_SECRET"
_PROCESS_SECRET = secrets.token_bytes(32)
PHOTO_LINK_SECONDS = 3600  # the widget's own view of a photo it uploaded


def _secret() -> bytes:
    value = os.environ.get(SECRET_ENV) or os.environ.get("QC_RASA_TOKEN")
    return value.encode("utf-8") if value else _PROCESS_SECRET


def _mac(nonce: str) -> str:
    return hmac.new(_secret(), b"qc-socketio-session:" + nonce.encode("ascii"), hashlib.sha256).hexdigest()[:16]


def new_session_id() -> str:
    nonce = secrets.token_hex(8)
    return nonce + _mac(nonce)


def issued_by_us(session_id: Any) -> bool:
    """True for a session id this server (or one sharing its secret) issued."""
    return (isinstance(session_id, str) and bool(SESSION_ID.match(session_id))
            and hmac.compare_digest(session_id[16:], _mac(session_id[:16])))


def _link_mac(name: str, owner: str, expires: int) -> str:
    msg = f"qc-photo-link:{name}:{owner}:{expires}".encode()
    return hmac.new(_secret(), msg, hashlib.sha256).hexdigest()


def sign_photo_link(name: str, owner: str, now: float | None = None) -> str:
    """The query string of a short-lived link to photo `name` for its uploader `owner`."""
    expires = int((now if now is not None else time.time()) + PHOTO_LINK_SECONDS)
    return f"s={owner}&e={expires}&sig={_link_mac(name, owner, expires)}"


def photo_link_ok(name: str, owner: str | None, s: str, e: str, sig: str, now: float | None = None) -> bool:
    """A signed link is good until it expires, and only for the photo's uploader."""
    if owner is None or not e.isdigit() or not hmac.compare_digest(s.encode(), owner.encode()):
        return False
    if int(e) < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(sig.encode(), _link_mac(name, owner, int(e)).encode())
