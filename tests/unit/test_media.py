"""bot/uploads.py: the one magic-byte check behind the widget's uploads and WeChat's photos."""
from __future__ import annotations

import pytest

from bot.uploads import CONTENT_TYPES, SNIFF_BYTES, sniff_image

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 200


@pytest.mark.parametrize("data,ext", [(JPEG, "jpg"), (PNG, "png"), (WEBP, "webp")], ids=["jpeg", "png", "webp"])
def test_images_by_their_first_bytes(data: bytes, ext: str) -> None:
    assert sniff_image(data[:SNIFF_BYTES]) == ext
    assert CONTENT_TYPES[ext] == {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}[ext]


@pytest.mark.parametrize("data", [
    b"GIF89a" + b"\x00" * 200,  # a real image, but not one we serve
    b"<html><script>alert(1)</script></html>",
    b"%PDF-1.7\n",
    b"",
    b"\xff\xd8",  # a JPEG cut short
    b"\x89PNG\r\n\x1a",  # a PNG signature cut short
    b"RIFF\x00\x00\x00\x00WAVE",  # RIFF, but audio
    b"RIFF\x00\x00\x00\x00WEB",  # too short for WEBP
    b"x\xff\xd8\xff",  # the signature must be at the start
])
def test_everything_else_is_not_an_image(data: bytes) -> None:
    assert sniff_image(data[:SNIFF_BYTES]) is None


def test_every_entry_point_uses_this_check() -> None:
    import bot.channels.wechat.turns as wechat
    import bot.web.widget as widget
    from bot import uploads

    assert wechat.sniff_image is sniff_image and widget.sniff_image is sniff_image
    # the console's after-photos: the same check, answered as a Content-Type
    assert [uploads.content_type_of(d[:SNIFF_BYTES]) for d in (JPEG, PNG, WEBP, b"GIF89a")] == \
        ["image/jpeg", "image/png", "image/webp", None]


# --- issue 13 item 6: only a photo we stored is a photo ------------------------------------

NAME = "0123456789abcdef" * 2 + ".jpg"


@pytest.mark.parametrize("ref", [f"/widget/photo/{NAME}", f"https://12345.example.cn/widget/photo/{NAME}",
                                 f"http://127.0.0.1:8080/widget/photo/{NAME}"])
def test_our_photo_references(ref: str) -> None:
    from bot.uploads import own_photo_name

    assert own_photo_name(ref) == NAME


@pytest.mark.parametrize("ref", [None, 3, "", "https://img.example.cn/a.jpg", "javascript:alert(1)",
                                 f"/widget/photo/{NAME}?x=1", f"/widget/photo/../{NAME}", "/widget/photo/ab.jpg",
                                 f"/uploads/{NAME}", f"https://a.example/x/widget/photo/{NAME}",
                                 f"/widget/photo/{NAME[:-4]}.svg", "x" * 600])
def test_anything_else_is_not_our_photo(ref) -> None:
    from bot.uploads import own_photo_name

    assert own_photo_name(ref) is None
