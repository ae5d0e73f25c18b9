"""WeChat message XML: safe parsing of what WeChat posts, and the passive replies.

Parsing goes through defusedxml with DTDs, entity declarations and external references
all refused, on bytes that must be UTF-8; anything else is a `BadXml` (→ 400).
"""
from __future__ import annotations

import re

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MAX_FIELD_CHARS = 8192
_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']", re.I)


class BadXml(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_message(body: bytes) -> dict[str, str]:
    """<xml><A>..</A><B>..</B></xml> → {"A": "..", "B": ".."} (top-level children only)."""
    try:
        body.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadXml("not_utf8")
    m = _DECLARED_ENCODING.match(body)
    if m and m.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
        raise BadXml("not_utf8")
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise BadXml(f"forbidden_xml:{type(exc).__name__}")
    except Exception:  # ParseError and friends: malformed
        raise BadXml("malformed_xml")
    if root.tag != "xml":
        raise BadXml("malformed_xml")
    out: dict[str, str] = {}
    for child in root:
        if len(child):  # nested structures (e.g. ScanCodeInfo): not used by us
            continue
        text = (child.text or "").strip()
        if len(text) > MAX_FIELD_CHARS:
            raise BadXml("field_too_long")
        out[child.tag] = text
    return out


def cdata(value: str) -> str:
    # "]]>" cannot appear inside one CDATA section: split it across two
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(to_user: str, from_user: str, create_time: int, content: str) -> str:
    return (
        "<xml>"
        f"<ToUserName>{cdata(to_user)}</ToUserName>"
        f"<FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(create_time)}</CreateTime>"
        f"<MsgType>{cdata('text')}</MsgType>"
        f"<Content>{cdata(content)}</Content>"
        "</xml>"
    )


def transfer_reply(to_user: str, from_user: str, create_time: int) -> str:
    """WeChat's passive reply that hands the resident to the Official Account's 客服 system."""
    return (
        "<xml>"
        f"<ToUserName>{cdata(to_user)}</ToUserName>"
        f"<FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(create_time)}</CreateTime>"
        f"<MsgType>{cdata('transfer_customer_service')}</MsgType>"
        "</xml>"
    )


def encrypted_envelope(encrypt: str, msg_signature: str, timestamp: str, nonce: str) -> str:
    return (
        "<xml>"
        f"<Encrypt>{cdata(encrypt)}</Encrypt>"
        f"<MsgSignature>{cdata(msg_signature)}</MsgSignature>"
        f"<TimeStamp>{timestamp}</TimeStamp>"
        f"<Nonce>{cdata(nonce)}</Nonce>"
        "</xml>"
    )
