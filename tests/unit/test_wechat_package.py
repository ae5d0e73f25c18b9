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


def _channel_imports() -> dict[str, set[str]]:
    """bot.channels.* module → the bot.channels.* modules it imports (anywhere in the file)."""
    import ast

    root = REPO_ROOT / "bot" / "channels"
    names = {".".join(p.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                # `from pkg import module` is an edge to that module (pkg/__init__.py runs for
                # any import of a submodule, so it is not counted as an edge of its own)
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in names]
                candidates = subs or [node.module]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            found |= {c for c in candidates if c in names and c != name}
        graph[name] = found
    return graph


def test_no_import_circle_inside_bot_channels() -> None:
    graph = _channel_imports()
    assert "bot.channels.wechat.gateway" in graph["bot.channels.wechat.channel"]  # the walk sees imports
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, " -> ".join(path + [node])
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, path + [node])
        done.add(node)

    for start in sorted(graph):
        visit(start, [])
