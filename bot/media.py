"""What an uploaded file really is, by its first bytes (the sender's claimed type and
file name are ignored): one check for every way a photo comes in — the web widget's
upload and WeChat's media API."""
from __future__ import annotations

import re
from typing import Optional

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
