"""The widget's web routes in-process (aiohttp test server): photo upload checks (type by
magic bytes, size, header), storage under a random name outside any web root, download
only by id (no path traversal), the static whitelist and the page's socket URL."""
from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from bot.channels.socketio import session_id_for
from bot.photoclean import clean_photo
from bot.security.sessionid import new_session_id
from bot.web.app import init_app
from bot.web.keys import Settings
from bot.web.widget import MAX_PHOTO_BYTES, WIDGET, WidgetConfig, photo_path
from tests.photos import jpeg_with_gps, metadata_of, plain, png_with_text

JPEG, PNG, WEBP = plain("JPEG"), plain("PNG"), plain("WEBP")
GIF = b"GIF89a" + b"\x00" * 200
HTML = b"<html><script>alert(1)</script></html>"
SESSION = new_session_id()
HEADERS = {"X-QC-Widget": "1", "X-QC-Session": SESSION}
NAME = re.compile(r"^[0-9a-f]{32}\.(jpg|png|webp)$")


@pytest.fixture
def dirs(tmp_path: Path):
    dist = tmp_path / "dist"
    (dist / "vendor").mkdir(parents=True)
    (dist / "index.html").write_text('<meta name="qc-socket-url" content="{{SOCKET_URL}}">', encoding="utf-8")
    (dist / "widget.js").write_text("/* js */", encoding="utf-8")
    (dist / "embed.js").write_text("/* embed */", encoding="utf-8")
    (dist / "vendor" / "socket.io.min.js").write_text("/* io */", encoding="utf-8")
    (dist / "BUILD.json").write_text("{}", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("secret", encoding="utf-8")
    return dist, tmp_path / "uploads"


def run(dirs, check, socket_url: str = ""):
    dist, uploads = dirs

    async def go():
        app = init_app(Settings(rasa_url="http://127.0.0.1:5005"))
        app[WIDGET] = WidgetConfig(dist_dir=dist, upload_dir=uploads, socket_url=socket_url)
        async with TestClient(TestServer(app)) as client:
            await check(client)

    asyncio.run(go())


def form(data: bytes, filename: str = "photo.jpg", content_type: str = "image/jpeg", field: str = "file"):
    fd = aiohttp.FormData()
    # a stream, as aiohttp asks for large bodies (raw bytes warn that they may block the loop)
    fd.add_field(field, io.BytesIO(data), filename=filename, content_type=content_type)
    return fd


@pytest.mark.parametrize("data,ext", [(JPEG, "jpg"), (PNG, "png"), (WEBP, "webp")], ids=["jpeg", "png", "webp"])
def test_upload_then_download_by_id(dirs, data, ext):
    _, uploads = dirs

    async def check(client):
        # the client's name and type are ignored: the bytes decide, the server names the file
        r = await client.post("/widget/upload", data=form(data, "../../../etc/passwd", "text/plain"), headers=HEADERS)
        assert r.status == 201, await r.text()
        body = await r.json()
        assert NAME.match(body["id"]) and body["id"].endswith("." + ext)
        assert body["url"].endswith(f"/widget/photo/{body['id']}")
        assert [p.name for p in uploads.iterdir()] == [body["id"]]
        assert (uploads / body["id"]).read_bytes() == clean_photo(data, ext)  # re-encoded from its pixels
        assert (uploads / body["id"]).stat().st_mode & 0o077 == 0  # not world/group readable
        assert (await client.get(f"/widget/photo/{body['id']}")).status == 404  # no public link
        assert body["view"].startswith(body["url"] + f"?s={SESSION}&e=")
        got = await client.get("/" + body["view"].split("://", 1)[1].split("/", 1)[1])
        assert got.status == 200
        assert got.headers["Content-Type"] == {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}[ext]
        assert got.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in got.headers["Content-Security-Policy"]
        assert await got.read() == clean_photo(data, ext)

    run(dirs, check)


@pytest.mark.parametrize("data,ext", [(jpeg_with_gps(orientation=6), "jpg"), (png_with_text(), "png")],
                         ids=["jpeg-gps-exif", "png-text-chunks"])
def test_a_phone_photo_is_stored_without_its_metadata(dirs, data, ext):
    _, uploads = dirs
    assert metadata_of(data)  # GPS, device, comments, XMP… going in

    async def check(client):
        r = await client.post("/widget/upload", data=form(data), headers=HEADERS)
        assert r.status == 201, await r.text()
        name = (await r.json())["id"]
        assert name.endswith("." + ext)
        stored = (uploads / name).read_bytes()
        assert metadata_of(stored) == []
        if ext == "jpg":  # turned upright before its EXIF went
            assert Image.open(io.BytesIO(stored)).size == (24, 48)

    run(dirs, check)


def test_an_image_that_does_not_decode_is_refused(dirs):
    _, uploads = dirs

    async def check(client):
        r = await client.post("/widget/upload", data=form(b"\xff\xd8\xff\xe0" + b"\x00" * 300), headers=HEADERS)
        assert r.status == 415 and (await r.json())["error"] == "bad_image"

    run(dirs, check)
    assert not uploads.exists() or not [p for p in uploads.iterdir() if p.is_file()]


@pytest.mark.parametrize("data", [GIF, HTML, b"%PDF-1.4", b"<svg xmlns='http://www.w3.org/2000/svg'/>"],
                         ids=["gif", "html", "pdf", "svg"])
def test_other_types_refused_whatever_the_client_says(dirs, data):
    _, uploads = dirs

    async def check(client):
        r = await client.post("/widget/upload", data=form(data, "photo.jpg", "image/jpeg"), headers=HEADERS)
        assert r.status == 415
        assert "JPEG" in (await r.json())["message"]

    run(dirs, check)
    assert not uploads.exists() or not any(uploads.iterdir())


def test_size_limit(dirs):
    _, uploads = dirs

    async def check(client):
        ok = JPEG + b"\x00" * (MAX_PHOTO_BYTES - len(JPEG))
        r = await client.post("/widget/upload", data=form(ok), headers=HEADERS)
        assert r.status == 201
        r = await client.post("/widget/upload", data=form(ok + b"\x00"), headers=HEADERS)
        assert r.status == 413
        r = await client.post("/widget/upload", data=form(b""), headers=HEADERS)
        assert r.status == 400

    run(dirs, check)
    assert len(list(uploads.iterdir())) == 1
    assert not [p for p in uploads.iterdir() if p.name.startswith(".")]  # no partial file left


def test_upload_needs_the_widget_header_and_a_file_field(dirs):
    async def check(client):
        r = await client.post("/widget/upload", data=form(JPEG))  # e.g. a cross-site <form>
        assert r.status == 403
        r = await client.post("/widget/upload", data=form(JPEG, field="other"), headers=HEADERS)
        assert r.status == 400
        r = await client.post("/widget/upload", data=b"\xff\xd8\xff", headers={**HEADERS, "Content-Type": "image/jpeg"})
        assert r.status == 400
        r = await client.get("/widget/upload")
        assert r.status in (404, 405)

    run(dirs, check)


def test_no_path_traversal(dirs):
    dist, uploads = dirs
    uploads.mkdir()
    for bad in ("../secret.txt", "..%2fsecret.txt", "a" * 32 + ".jpg/../../secret.txt", "/etc/passwd",
                "A" * 32 + ".jpg", "a" * 31 + ".jpg", "a" * 32 + ".gif", "a" * 32 + ".jpg\x00", ""):
        assert photo_path(uploads, bad) is None, bad
    assert photo_path(uploads, "a" * 32 + ".jpg") == uploads / ("a" * 32 + ".jpg")

    async def check(client):
        for url in ("/widget/photo/../secret.txt", "/widget/photo/..%2Fsecret.txt", "/widget/photo/%2e%2e/secret.txt",
                    "/widget/photo/" + "a" * 32 + ".jpg", "/widget/../secret.txt", "/widget/..%2F..%2Fsecret.txt",
                    "/widget/vendor/..%2F..%2Fsecret.txt", "/widget/BUILD.json", "/widget/index.html%00.js",
                    "/widget/photo/" + "a" * 32 + ".jpg%2F..%2F..%2Fsecret.txt"):
            r = await client.get(url)
            assert r.status == 404, url
            assert "secret" not in await r.text()

    run(dirs, check)


def test_static_whitelist_and_page(dirs):
    async def check(client):
        for name, ctype in (("embed.js", "application/javascript"), ("widget.js", "application/javascript"),
                            ("vendor/socket.io.min.js", "application/javascript")):
            r = await client.get(f"/widget/{name}")
            assert r.status == 200, name
            assert r.headers["Content-Type"].startswith(ctype)
        r = await client.get("/widget/widget.css")  # whitelisted but not built here
        assert r.status == 503
        r = await client.get("/widget", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == "/widget/"
        r = await client.get("/widget/")
        assert r.status == 200
        html = await r.text()
        # Rasa's address (QC_RASA_URL); a hostile Host header cannot inject markup
        assert 'content="http://127.0.0.1:5005"' in html
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "http://127.0.0.1:5005" in csp and "ws://127.0.0.1:5005" in csp
        r = await client.get("/widget/", headers={"Host": 'evil"><script>x</script>'})
        assert "<script>" not in await r.text()
        # Rasa's configured address, never the client's Host header
        r = await client.get("/widget/", headers={"Host": "evil.example"})
        assert 'content="http://127.0.0.1:5005"' in await r.text()
        assert "evil.example" not in r.headers["Content-Security-Policy"]

    run(dirs, check)


def test_same_origin_socket_url(dirs):
    async def check(client):
        r = await client.get("/widget/", headers={"Host": "evil.example:33333"})
        assert '<meta name="qc-socket-url" content="">' in await r.text()  # the widget then uses the page's origin
        assert "connect-src 'self';" in r.headers["Content-Security-Policy"]

    run(dirs, check, socket_url="same-origin")


def test_configured_socket_url(dirs):
    async def check(client):
        html = await (await client.get("/widget/")).text()
        assert 'content="https://chat.example.gov.cn"' in html

    run(dirs, check, socket_url="https://chat.example.gov.cn")


def test_page_when_not_built(tmp_path):
    async def go():
        app = init_app(Settings())
        app[WIDGET] = WidgetConfig(dist_dir=tmp_path / "none", upload_dir=tmp_path / "up")
        async with TestClient(TestServer(app)) as client:
            r = await client.get("/widget/")
            assert r.status == 503 and "make widget" in await r.text()

    asyncio.run(go())


def test_socket_session_ids():
    from bot.channels.socketio import issued_by_us, new_session_id

    good = new_session_id()
    assert re.match(r"^[0-9a-f]{32}$", good) and issued_by_us(good)
    assert session_id_for({"session_id": good}) == good
    made_up = "0123456789abcdef0123456789abcdef"  # the right shape, not issued by the server
    for bad in ({"session_id": "resident-1"}, {"session_id": None}, {}, None, "x", {"session_id": good.upper()},
                {"session_id": made_up}, {"session_id": good[:16] + made_up[16:]}):
        fresh = session_id_for(bad)
        assert re.match(r"^[0-9a-f]{32}$", fresh) and fresh not in (good, made_up) and issued_by_us(fresh)
