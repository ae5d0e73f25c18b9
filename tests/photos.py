"""Real little photos for upload tests, built with Pillow: a phone JPEG with GPS, device
and orientation EXIF, an embedded thumbnail, a comment and XMP; a PNG with text chunks
and EXIF; a WebP with EXIF. `metadata_of` lists every metadata block a stored file has."""
from __future__ import annotations

import io
import re
import struct
import zlib

from PIL import ExifTags, Image, PngImagePlugin

PHONE = "13812345678"
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
       b'exif:GPSLatitude="40,49.2N"/></rdf:RDF></x:xmpmeta>')
LEFT, RIGHT = (20, 40, 200), (210, 30, 30)  # a blue left third, the rest red


def picture(width: int = 48, height: int = 24, mode: str = "RGB") -> Image.Image:
    im = Image.new(mode, (width, height), RIGHT + ((255,) if mode == "RGBA" else ()))
    im.paste(LEFT + ((255,) if mode == "RGBA" else ()), (0, 0, width // 3, height))
    return im


def gps_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "HUAWEI"
    exif[ExifTags.Base.Model] = "Mate 60 Pro"
    exif[ExifTags.Base.DateTime] = "2026:11:20 08:15:00"
    exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps.update({ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (40.0, 49.0, 12.5),
                ExifTags.GPS.GPSLongitudeRef: "E", ExifTags.GPS.GPSLongitude: (111.0, 39.0, 3.25)})
    return exif


def jpeg_with_gps(orientation: int = 1) -> bytes:
    """A JPEG as a phone writes it: EXIF with GPS (and a JPEG thumbnail in IFD1), XMP, a
    comment naming the resident."""
    thumb = io.BytesIO()
    picture(8, 4).save(thumb, "JPEG")
    exif = gps_exif(orientation)
    raw_exif = exif.tobytes()
    out = io.BytesIO()
    picture().save(out, "JPEG", quality=95, exif=raw_exif, xmp=XMP, comment=f"王小明 {PHONE}".encode())
    data = out.getvalue()
    # the thumbnail as its own APP1-carried JPEG too: some cameras put it in an APP2 FlashPix block
    app2 = b"FPXR\x00" + thumb.getvalue()
    return data[:2] + b"\xff\xe2" + struct.pack(">H", len(app2) + 2) + app2 + data[2:]


def png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", f"call {PHONE}")  # tEXt (Latin-1)
    info.add_text("Author", "王小明")  # iTXt (not Latin-1)
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add_text("Description", "GPS 40.82,111.65", zip=True)  # zTXt
    out = io.BytesIO()
    picture(mode="RGBA").save(out, "PNG", pnginfo=info, exif=gps_exif().tobytes())
    data = out.getvalue()
    # and a tIME chunk (Pillow does not write one) before IEND
    body = struct.pack(">HBBBBB", 2026, 11, 20, 8, 15, 0)
    chunk = struct.pack(">I", len(body)) + b"tIME" + body + struct.pack(">I", zlib.crc32(b"tIME" + body))
    return data[:-12] + chunk + data[-12:]


def webp_with_exif() -> bytes:
    out = io.BytesIO()
    picture().save(out, "WEBP", exif=gps_exif().tobytes(), xmp=XMP, quality=95)
    return out.getvalue()


def plain(fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    picture(mode="RGBA" if fmt == "PNG" else "RGB").save(out, fmt)
    return out.getvalue()


def metadata_of(data: bytes) -> list[str]:
    """Every metadata block in a stored file (empty: clean), read from the bytes themselves."""
    found = []
    if data[:2] == b"\xff\xd8":
        pos = 2
        while pos + 4 <= len(data) and data[pos] == 0xFF:
            marker = data[pos + 1]
            if marker == 0xDA:  # start of scan: only pixels follow
                break
            length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
            body = data[pos + 4:pos + 2 + length]
            if 0xE1 <= marker <= 0xEF:  # APP1..APP15: EXIF, XMP, ICC, FlashPix, Adobe …
                found.append(f"APP{marker - 0xE0}:{body[:4]!r}")
            elif marker == 0xFE:
                found.append("COM")
            pos += 2 + length
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        pos = 8
        while pos + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            if kind not in (b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS"):
                found.append(kind.decode("latin-1"))
            pos += 12 + length
    elif data[:4] == b"RIFF":
        pos = 12
        while pos + 8 <= len(data):
            kind, length = struct.unpack("<4sI", data[pos:pos + 8])
            if kind in (b"EXIF", b"XMP ", b"ICCP"):
                found.append(kind.decode("latin-1"))
            pos += 8 + length + (length & 1)
    # whatever the container: no GPS tag, no phone number, no device name anywhere
    for needle in (b"GPS", PHONE.encode(), b"HUAWEI", b"Exif\x00\x00"):
        if needle in data:
            found.append(f"bytes:{needle!r}")
    if re.search(rb"xmpmeta", data):
        found.append("bytes:xmp")
    return found
