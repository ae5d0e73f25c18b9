"""bot/photoclean.py: what a stored photo keeps (pixels, the right way up) and loses
(EXIF with GPS and device, thumbnails, XMP, comments, ICC profiles, PNG text chunks)."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageCms

from bot.photoclean import MAX_PIXELS, PhotoUnreadable, clean_photo
from tests.photos import LEFT, RIGHT, jpeg_with_gps, metadata_of, plain, png_with_text, webp_with_exif


def _near(got, want, tolerance=12):
    return all(abs(a - b) <= tolerance for a, b in zip(got, want))


def test_jpeg_with_gps_comes_out_without_any_metadata():
    before = jpeg_with_gps()
    assert metadata_of(before) == ["APP2:b'FPXR'", "APP1:b'Exif'", "APP1:b'http'", "COM",
                                   "bytes:b'GPS'", "bytes:b'13812345678'", "bytes:b'HUAWEI'",
                                   "bytes:b'Exif\\x00\\x00'", "bytes:xmp"]
    after = clean_photo(before, "jpg")
    assert metadata_of(after) == []
    im = Image.open(io.BytesIO(after))
    assert im.format == "JPEG" and im.size == (48, 24) and im.mode == "RGB"
    assert not im.getexif() and "icc_profile" not in im.info and "comment" not in im.info
    assert _near(im.getpixel((2, 12)), LEFT) and _near(im.getpixel((45, 12)), RIGHT)


def test_orientation_is_applied_before_the_exif_goes():
    # 6: the camera was turned 90° clockwise; viewers rotate the stored pixels to show it
    im = Image.open(io.BytesIO(clean_photo(jpeg_with_gps(orientation=6), "jpg")))
    assert im.size == (24, 48)
    assert _near(im.getpixel((12, 2)), LEFT) and _near(im.getpixel((12, 45)), RIGHT)
    assert not im.getexif()


def test_png_text_chunks_exif_and_time_are_gone_alpha_stays():
    before = png_with_text()
    assert metadata_of(before) == ["tEXt", "iTXt", "iTXt", "zTXt", "eXIf", "tIME", "bytes:b'GPS'",
                                   "bytes:b'13812345678'", "bytes:b'HUAWEI'", "bytes:xmp"]
    after = clean_photo(before, "png")
    assert metadata_of(after) == []
    im = Image.open(io.BytesIO(after))
    assert im.format == "PNG" and im.mode == "RGBA" and im.info == {}
    assert im.getpixel((2, 2)) == LEFT + (255,) and im.getpixel((45, 2)) == RIGHT + (255,)


def test_webp_exif_and_xmp_are_gone():
    before = webp_with_exif()
    assert metadata_of(before) == ["EXIF", "XMP ", "bytes:b'GPS'", "bytes:b'HUAWEI'", "bytes:xmp"]
    after = clean_photo(before, "webp")
    assert metadata_of(after) == []
    assert Image.open(io.BytesIO(after)).format == "WEBP"


def test_an_icc_profile_is_converted_to_srgb_and_dropped():
    out = io.BytesIO()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (8, 8), RIGHT).save(out, "JPEG", icc_profile=icc, quality=95)
    before = out.getvalue()
    assert b"ICC_PROFILE" in before
    after = clean_photo(before, "jpg")
    assert metadata_of(after) == [] and b"ICC_PROFILE" not in after
    assert _near(Image.open(io.BytesIO(after)).getpixel((4, 4)), RIGHT)


def test_a_clean_photo_stays_a_photo_of_the_same_format():
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")):
        after = clean_photo(plain(fmt), ext)
        assert Image.open(io.BytesIO(after)).format == fmt and metadata_of(after) == []


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("data,ext", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200, "jpg"),  # the magic bytes, no picture
    (jpeg_with_gps()[:300], "jpg"),  # cut short
    (plain("PNG"), "jpg"),  # not what the name says
    (_png_claiming(10_000, 10_000), "png"),  # a decompression bomb: 100 MP claimed
    (plain("JPEG"), "gif"),
], ids=["magic-only", "truncated", "wrong-format", "bomb", "unsupported"])
def test_what_is_not_a_readable_photo_is_refused(data, ext):
    assert 10_000 * 10_000 > MAX_PIXELS
    with pytest.raises(PhotoUnreadable):
        clean_photo(data, ext)
