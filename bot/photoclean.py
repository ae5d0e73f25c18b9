"""Residents' photos without their metadata: every stored photo (widget, WeChat, console
after-photos) goes through `clean_photo` before it is written.

A phone's JPEG carries EXIF (GPS position, device, time, a thumbnail that may show the
uncropped picture), XMP, ICC profiles with comments, PNG text chunks. Removing known
blocks byte by byte misses what we do not know about, so the photo is decoded and a new
file is encoded from its pixels alone (Pillow writes only what it is handed):
- the EXIF orientation is applied first, so the picture still stands the right way up;
- an embedded colour profile is converted to sRGB, then dropped (colours stay right);
- only the first frame of an animated PNG/WebP is kept.
Same format out as in (the stored name's extension was chosen from the sniffed type).
"""
from __future__ import annotations

import io
import warnings

from PIL import Image, ImageCms, ImageOps

# A 5 MiB file can claim a huge canvas (a decompression bomb): refused before decoding.
# 50 MP is above any phone camera's full resolution.
MAX_PIXELS = 50_000_000
JPEG_QUALITY = 90
_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


class PhotoUnreadable(ValueError):
    """Not a photo we can decode (corrupt, cut short, too large a canvas, another format)."""


def clean_photo(data: bytes, ext: str) -> bytes:
    """The photo re-encoded from its pixels as `ext` (jpg/png/webp), without any metadata."""
    fmt = _FORMATS.get(ext)
    if fmt is None:
        raise PhotoUnreadable(f"unsupported type {ext!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise PhotoUnreadable(f"canvas too large ({width}x{height})")
                im.load()
                pixels = _upright_srgb(im)
    except PhotoUnreadable:
        raise
    except Exception as exc:  # Pillow raises many types for broken files
        raise PhotoUnreadable(f"cannot decode the image: {type(exc).__name__}") from None
    # A fresh image from the raw pixels: no `info` (Pillow's JPEG writer falls back to the
    # source's comment, its PNG writer to the source's ICC profile).
    fresh = Image.frombytes(pixels.mode, pixels.size, pixels.tobytes())
    out = io.BytesIO()
    if fmt == "JPEG":
        fresh.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    elif fmt == "PNG":
        fresh.save(out, "PNG", optimize=True)
    else:
        fresh.save(out, "WEBP", quality=JPEG_QUALITY, method=4)
    return out.getvalue()


def _upright_srgb(im: Image.Image) -> Image.Image:
    """The first frame, turned as its EXIF orientation says, in sRGB, in a mode the
    output format takes without a palette (L, LA, RGB or RGBA)."""
    icc = im.info.get("icc_profile")
    upright = ImageOps.exif_transpose(im) or im
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
    if im.format == "JPEG" and upright.mode != "L":
        mode = "RGB"  # CMYK/YCCK included: every browser shows RGB
    elif upright.mode in ("L", "LA", "RGB", "RGBA"):
        mode = upright.mode
    else:
        mode = "RGBA" if has_alpha else "RGB"
    if icc and mode in ("RGB", "RGBA") and upright.mode in ("RGB", "RGBA", "CMYK"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(upright, source, ImageCms.createProfile("sRGB"),
                                             outputMode=mode)
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: the pixels as they are
    return upright.convert(mode) if upright.mode != mode else upright
