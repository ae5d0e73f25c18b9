"""What the resident reads on WeChat (Chinese, one place) and how Rasa's answers become
WeChat text: buttons as numbered lines, split into pieces WeChat accepts. Pure."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from bot.channels.common import EMPTY_MESSAGE, MSG_TOO_FAST
from bot.text import clean_message, normalise

__all__ = ["EMPTY_MESSAGE", "MSG_TOO_FAST", "MSG_TEXT_ONLY", "MSG_VOICE_UNCLEAR", "MSG_PHOTO_FAILED", "CHOOSE_HINT",
           "render", "chunks", "payload", "resident_text"]

MSG_TEXT_ONLY = "您好，这类消息暂时无法处理，请发送文字描述您遇到的问题（也可以发图片或位置）。"
MSG_VOICE_UNCLEAR = "没有识别出您的语音内容，请发送文字。"
MSG_PHOTO_FAILED = "图片没有接收成功，请重新发送；不方便的话回复“跳过”。"
CHOOSE_HINT = "（回复数字即可选择）"
MAX_REPLY_BYTES = 2000  # WeChat text messages: 2048 bytes

XML_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def render(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    """Rasa's messages → one text (buttons as numbered lines) and the buttons offered."""
    blocks: list[str] = []
    buttons: list[dict[str, str]] = []
    for m in messages:
        lines = []
        if m.get("text"):
            lines.append(str(m["text"]).strip())
        if m.get("image"):
            lines.append(f"图片：{m['image']}")
        if m.get("attachment"):
            lines.append(str(m["attachment"]))
        for b in m.get("buttons") or []:
            title = str(b.get("title") or "").strip()
            if not title:
                continue
            buttons.append({"title": title, "payload": str(b.get("payload") or title)})
            lines.append(f"{len(buttons)}. {title}")
        if lines:
            blocks.append("\n".join(lines))
    if buttons:
        blocks.append(CHOOSE_HINT)
    return "\n\n".join(blocks), buttons


def chunks(text: str, limit: int = MAX_REPLY_BYTES) -> list[str]:
    """Split on line boundaries into pieces of at most `limit` UTF-8 bytes."""
    text = XML_BAD_CHARS.sub("", text or "").strip()
    if not text:
        return []
    out: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line.encode("utf-8")) > limit:  # one very long line: cut by characters
            cut = limit // 3
            head, line = line[:cut], line[cut:]
            if current:
                out.append(current)
                current = ""
            out.append(head)
        candidate = f"{current}\n{line}" if current else line
        if len(candidate.encode("utf-8")) > limit:
            out.append(current)
            current = line
        else:
            current = candidate
    if current.strip():
        out.append(current)
    return [c.strip("\n") for c in out if c.strip()]


def payload(intent: str, entities: dict[str, str] | None = None) -> str:
    return f"/{intent}" + (json.dumps(entities, ensure_ascii=False) if entities else "")


def resident_text(resident: Mapping[str, Any], text: str) -> str:
    """What Rasa gets for a resident's text: a number or a title of the buttons last
    offered is that button's payload; anything else is text, never a payload."""
    text = clean_message(text)  # controls, CR/LF, bidi overrides: bot/text.py
    if not text.strip():
        return EMPTY_MESSAGE
    buttons = resident.get("buttons") or []
    if buttons:
        answer = normalise(text).strip()
        if answer.isdigit() and 1 <= int(answer) <= len(buttons):
            return buttons[int(answer) - 1]["payload"]
        for b in buttons:
            if answer == normalise(b["title"]).strip():
                return b["payload"]
    # Only the channel writes payloads ('/intent{…}'): a typed one is read as text.
    return "／" + text[1:] if text.startswith("/") else text
