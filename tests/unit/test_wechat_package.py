"""The WeChat channel is a package; the names loaded by path keep working (issue 16)."""
from __future__ import annotations

import subprocess
import sys

from rasa.shared.utils.common import class_from_module_path

from bot.channels.wechat.channel import WeChatInput, send_to_resident
from bot.channels.wechat.config import WeChatConfig
from bot.channels.wechat.gateway import WeChatGateway
from bot.paths import REPO_ROOT


def test_credentials_yml_class_path_loads_the_channel() -> None:
    # what Rasa does with the key in credentials.yml
    assert class_from_module_path("bot.channels.wechat.WeChatInput") is WeChatInput
    assert "bot.channels.wechat.WeChatInput:" in (REPO_ROOT / "credentials.yml").read_text(encoding="utf-8")


def test_public_names_are_re_exported() -> None:
    import bot.channels.wechat as wechat

    assert (wechat.WeChatInput, wechat.WeChatConfig, wechat.WeChatGateway, wechat.send_to_resident) == \
        (WeChatInput, WeChatConfig, WeChatGateway, send_to_resident)


def test_the_store_imports_without_rasa() -> None:
    # bot/storage/all_tables.py imports the channel's tables: that must not start Rasa
    code = "import sys, bot.storage.all_tables; print('rasa' in sys.modules, 'sanic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
