"""Photos residents and workers send: the one place they are checked and stored.

What a file really is comes from its first bytes (the sender's claimed type and file name
are ignored). Every channel stores the same way (the widget's upload, WeChat's media
download, the console's after-photos): outside any web root (var/uploads/, QC_UPLOAD_DIR),
under a random name, in a 0700 folder, as a 0600 file written to a hidden temporary name
and renamed, so no partial file is ever visible under the photo's name. What is stored is the
photo re-encoded from its pixels (bot/photoclean.py): no GPS position, device or thumbnail."""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from bot.paths import VAR_DIR
from bot.photoclean import PhotoUnreadable, clean_photo
from bot.security.private import FILE_MODE, private_dir

# extension → Content-Type: only formats every phone browser displays
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
SNIFF_BYTES = 16  # enough for every signature below
# the random names our upload endpoint and WeChat's media download give photos
PHOTO_NAME = r"[0-9a-f]{32}\.(?:jpg|png|webp)"
# a photo reference our channels write: {QC_PUBLIC_URL}/widget/photo/<name> (relative when unset)
_OWN_PHOTO = re.compile(rf"^(?:https?://[A-Za-z0-9.\-:\[\]]+)?/widget/photo/({PHOTO_NAME})$")


def sniff_image(head: bytes) -> str | None:
    """The file extension for JPEG/PNG/WebP magic bytes, else None."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def own_photo_name(ref: object) -> str | None:
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


def upload_folder() -> Path:
    return Path(os.environ.get("QC_UPLOAD_DIR") or VAR_DIR / "uploads")


def _owner_file(folder: Path, name: str) -> Path:
    return folder.parent / f"{folder.name}.owners" / name


def record_owner(folder: Path, name: str, owner: str) -> None:
    """Write who uploaded photo `name` (before the photo itself is visible under its name)."""
    if not _OWNER_ID.match(owner):
        raise ValueError("bad owner")
    private_dir(_owner_file(folder, name).parent)
    fd = os.open(_owner_file(folder, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(owner)


def photo_owner(folder: Path, name: str) -> str | None:
    """The conversation that uploaded photo `name`, None when unknown (no record)."""
    try:
        return _owner_file(folder, name).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def photo_belongs_to(ref: object, conversation: str, folder: Path | None = None) -> bool:
    """True when `ref` is our photo reference and it was uploaded in `conversation`."""
    name = own_photo_name(ref)
    if name is None or not conversation:
        return False
    owner = photo_owner(folder or upload_folder(), name)
    return owner is not None and hmac.compare_digest(owner.encode(), conversation.encode())


# --- storing ------------------------------------------------------------------------
MAX_PHOTO_BYTES = 5 * 1024 * 1024


def save_photo(data: bytes, ext: str, folder: Path, owner: str | None = None) -> str:
    """Store the photo without its metadata under a new random name in `folder`; the name.
    With `owner`, who uploaded it is written first (bot.uploads.photo_belongs_to).
    Raises PhotoUnreadable when the bytes do not decode as an `ext` image (nothing is written).
    Decoding takes CPU: call it off the event loop."""
    return _store(data, ext, folder, owner)[0]


def _store(data: bytes, ext: str, folder: Path, owner: str | None) -> tuple[str, bytes]:
    """The stored name and the bytes actually stored (cleaned)."""
    data = clean_photo(data, ext)  # every channel's photo goes through here: nothing else writes one
    private_dir(folder)  # 0700 even when it existed (shared by the widget, WeChat and the console)
    name = f"{secrets.token_hex(16)}.{ext}"
    if owner is not None:
        record_owner(folder, name, owner)  # before the photo exists under its name
    tmp = folder / f".{name}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, folder / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return name, data


def remove_photo(folder: Path, name: str) -> bool:
    """Delete a stored photo and its owner record (retention); True when the file was there."""
    if not re.fullmatch(PHOTO_NAME, name or ""):
        return False
    path = folder / name
    existed = path.is_file()
    path.unlink(missing_ok=True)
    _owner_file(folder, name).unlink(missing_ok=True)
    return existed


# --- the console's after-photos (办结照片) ---------------------------------------------
# content type → file extension
EXTENSIONS = {content_type: ext for ext, content_type in CONTENT_TYPES.items()}


class UploadRejected(ValueError):
    """A file the console refuses (message is shown to the user)."""


def content_type_of(head: bytes) -> str | None:
    """The image's content type from its first bytes, or None."""
    ext = sniff_image(head)
    return CONTENT_TYPES[ext] if ext else None


@dataclass(frozen=True)
class StoredFile:
    stored_name: str
    content_type: str
    size: int
    sha256: str
    path: Path


def store_image(data: bytes, folder: Path | None = None) -> StoredFile:
    if not data:
        raise UploadRejected("照片是空文件 / the file is empty")
    if len(data) > MAX_PHOTO_BYTES:
        raise UploadRejected("照片不能超过 5 MB / the photo must not exceed 5 MiB")
    content_type = content_type_of(data[:SNIFF_BYTES])
    if content_type is None:
        raise UploadRejected("只接受 JPEG、PNG 或 WebP 图片 / only JPEG, PNG or WebP images are accepted")
    folder = folder or upload_folder()
    try:
        name, data = _store(data, EXTENSIONS[content_type], folder, None)
    except PhotoUnreadable:
        raise UploadRejected("照片无法读取 / the image cannot be read") from None
    return StoredFile(name, content_type, len(data), hashlib.sha256(data).hexdigest(), folder / name)


def path_of(stored_name: str, folder: Path | None = None) -> Path:
    folder = (folder or upload_folder()).resolve()
    path = (folder / stored_name).resolve()
    if path.parent != folder:  # names come from our own table, but never trust a path
        raise UploadRejected("bad file name")
    return path
