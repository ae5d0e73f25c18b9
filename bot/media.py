"""What an uploaded file really is, by its first bytes (the sender's claimed type and
file name are ignored): one check for every way a photo comes in — the web widget's
upload and WeChat's media API."""
from __future__ import annotations

from typing import Optional

# extension → Content-Type: only formats every phone browser displays
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
SNIFF_BYTES = 16  # enough for every signature below


def sniff_image(head: bytes) -> Optional[str]:
    """The file extension for JPEG/PNG/WebP magic bytes, else None."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None
