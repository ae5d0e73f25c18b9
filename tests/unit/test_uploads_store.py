"""bot/uploads.py is the one place photos are stored (issue 16): the widget's upload, WeChat's
media download and the console's after-photos all leave a 0600 file in a 0700 folder, written
under a hidden temporary name and renamed, so no partial photo is ever visible under its name;
what is stored is the photo re-encoded without its metadata (issue 19), whichever channel sent it."""
from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot import uploads
from bot.channels.wechat.turns import Turns
from bot.photoclean import PhotoUnreadable, clean_photo
from bot.security.sessionid import new_session_id
from bot.web.app import init_app
from bot.web.keys import Settings
from bot.web.widget import WIDGET, WidgetConfig
from tests.photos import jpeg_with_gps, metadata_of

JPEG = jpeg_with_gps()  # a phone photo: GPS, device, thumbnail, comment with a phone number
STORED = clean_photo(JPEG, "jpg")


def widget_upload(folder: Path) -> str:
    dist = folder.parent / "dist"
    dist.mkdir(exist_ok=True)
    session = new_session_id()

    async def go() -> str:
        app = init_app(Settings(rasa_url="http://127.0.0.1:5005"))
        app[WIDGET] = WidgetConfig(dist_dir=dist, upload_dir=folder)
        async with TestClient(TestServer(app)) as client:
            fd = aiohttp.FormData()
            fd.add_field("file", JPEG, filename="p.jpg", content_type="image/jpeg")
            r = await client.post("/widget/upload", data=fd, headers={"X-QC-Widget": "1", "X-QC-Session": session})
            assert r.status == 201, await r.text()
            return (await r.json())["id"]

    return asyncio.run(go())


def wechat_download(folder: Path) -> str:
    gateway = SimpleNamespace(config=SimpleNamespace(upload_dir=str(folder)))
    return Turns.save_upload(gateway, JPEG, "jpg")  # type: ignore[arg-type]


def console_after_photo(folder: Path) -> str:
    return uploads.store_image(JPEG, folder).stored_name


CHANNELS = {"widget": widget_upload, "wechat": wechat_download, "console": console_after_photo}


@pytest.mark.parametrize("channel", CHANNELS)
def test_each_channel_stores_a_private_photo_by_temp_file_and_rename(channel: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)  # made earlier by hand: storing makes it private again
    old_umask = os.umask(0o022)
    renames = []
    real_replace = os.replace

    def spy(src, dst):  # what is on disk at the moment the photo gets its name
        src, dst = Path(src), Path(dst)
        renames.append((src.name, dst.name, dst.exists(), src.read_bytes() == STORED, stat.S_IMODE(src.stat().st_mode)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    try:
        name = CHANNELS[channel](folder)
    finally:
        os.umask(old_umask)
    assert renames == [(f".{name}.part", name, False, True, 0o600)]
    assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (folder / name).read_bytes() == STORED
    assert metadata_of(JPEG) != [] and metadata_of(STORED) == []
    assert sorted(p.name for p in folder.iterdir()) == [name]  # no temporary file left


def test_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "uploads"

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        uploads.save_photo(JPEG, "jpg", folder)
    assert list(folder.iterdir()) == []


def test_an_undecodable_image_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    folder = tmp_path / "uploads"
    broken = JPEG[:200]  # right magic bytes, cut short
    with pytest.raises(PhotoUnreadable):
        uploads.save_photo(broken, "jpg", folder, owner="rest:someone")
    with pytest.raises(uploads.UploadRejected, match="照片无法读取"):
        uploads.store_image(broken, folder)
    assert not folder.exists() or list(folder.iterdir()) == []
    assert not (tmp_path / "uploads.owners").exists()
