"""After-photos (办结照片): type checked by magic bytes, ≤ 5 MiB, stored outside the web
root under a random name (var/uploads/ by default, QC_UPLOAD_DIR elsewhere)."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from bot import media
from bot.paths import VAR_DIR
from bot.private import private_dir

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
DEFAULT_UPLOAD_DIR = VAR_DIR / "uploads"

# content type → file extension; only formats every phone browser displays.
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


class UploadRejected(ValueError):
    """A file the console refuses (message is shown to the user)."""


def sniff_image(head: bytes) -> str | None:
    """The image type from the first bytes, or None; the browser's claim is ignored
    (the same check as the widget's and WeChat's photos: bot/media.py)."""
    ext = media.sniff_image(head)
    return media.CONTENT_TYPES[ext] if ext else None


@dataclass(frozen=True)
class StoredFile:
    stored_name: str
    content_type: str
    size: int
    sha256: str
    path: Path


def upload_dir() -> Path:
    return Path(os.environ.get("QC_UPLOAD_DIR") or DEFAULT_UPLOAD_DIR)


def store_image(data: bytes, folder: Path | None = None) -> StoredFile:
    if not data:
        raise UploadRejected("照片是空文件 / the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadRejected("照片不能超过 5 MB / the photo must not exceed 5 MiB")
    content_type = sniff_image(data[:media.SNIFF_BYTES])
    if content_type is None:
        raise UploadRejected("只接受 JPEG、PNG 或 WebP 图片 / only JPEG, PNG or WebP images are accepted")
    folder = folder or upload_dir()
    private_dir(folder)  # 0700, like the widget's and WeChat's uploads
    name = f"{secrets.token_hex(16)}.{EXTENSIONS[content_type]}"
    path = folder / name
    # O_EXCL: never overwrite; 0o600: the service user's alone.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return StoredFile(name, content_type, len(data), hashlib.sha256(data).hexdigest(), path)


def path_of(stored_name: str, folder: Path | None = None) -> Path:
    folder = (folder or upload_dir()).resolve()
    path = (folder / stored_name).resolve()
    if path.parent != folder:  # names come from our own table, but never trust a path
        raise UploadRejected("bad file name")
    return path
