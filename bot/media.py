"""What an uploaded file really is, by its first bytes (the sender's claimed type and
file name are ignored): one check for every way a photo comes in — the web widget's
upload and WeChat's media API."""
from __future__ import annotations

import hmac
import os
import re
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from pathlib import Path

# extension → Content-Type: only formats every phone browser displays
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
SNIFF_BYTES = 16  # enough for every signature below
# the random names our upload endpoint and WeChat's media download give photos
PHOTO_NAME = r"[0-9a-f]{32}\.(?:jpg|png|webp)"
# a photo reference our channels write: {QC_PUBLIC_URL}/widget/photo/<name> (relative when unset)
_OWN_PHOTO = re.compile(rf"^(?:https?://[A-Za-z0-9.\-:\[\]]+)?/widget/photo/({PHOTO_NAME})$")


def sniff_image(head: bytes) -> Optional[str]:
    """The file extension for JPEG/PNG/WebP magic bytes, else None."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def own_photo_name(ref: object) -> Optional[str]:
    """The stored file name when `ref` is a photo reference our upload endpoint or WeChat
    media download made; None for anything else (a link typed in a message, a script URL).
    Only such photos are stored on a ticket and shown (behind the console's permission check)."""
    if not isinstance(ref, str) or len(ref) > 512:
        return None
    m = _OWN_PHOTO.match(ref.strip())
    return m.group(1) if m else None


# --- whose photo it is ------------------------------------------------------------
# An upload belongs to the conversation that made it (the widget's Socket.IO session id,
# or "rest:<sender>" for a trusted REST front-end): a sidecar file next to the photo, 0600.
# A photo reference is "our photo" only in that conversation, so a link copied from one
# resident's chat cannot be attached to another's ticket (issue 13, outside test 2).
_OWNER_ID = re.compile(r"^[\w\-:.@]{1,160}$")


def upload_folder() -> "Path":
    from pathlib import Path

    from bot.paths import VAR_DIR

    return Path(os.environ.get("QC_UPLOAD_DIR") or VAR_DIR / "uploads")


def _owner_file(folder: "Path", name: str) -> "Path":
    return folder.parent / f"{folder.name}.owners" / name


def record_owner(folder: "Path", name: str, owner: str) -> None:
    """Write who uploaded photo `name` (before the photo itself is visible under its name)."""
    if not _OWNER_ID.match(owner):
        raise ValueError("bad owner")
    from bot.private import private_dir

    private_dir(_owner_file(folder, name).parent)
    fd = os.open(_owner_file(folder, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(owner)


def photo_owner(folder: "Path", name: str) -> Optional[str]:
    """The conversation that uploaded photo `name`, None when unknown (no record)."""
    try:
        return _owner_file(folder, name).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def photo_belongs_to(ref: object, conversation: str, folder: "Optional[Path]" = None) -> bool:
    """True when `ref` is our photo reference and it was uploaded in `conversation`."""
    name = own_photo_name(ref)
    if name is None or not conversation:
        return False
    owner = photo_owner(folder or upload_folder(), name)
    return owner is not None and hmac.compare_digest(owner.encode(), conversation.encode())
