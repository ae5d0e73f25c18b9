"""What the intent classifier reads: the problem, not the names, numbers and courtesies.

A resident's message is normalised (bot.text), then
- places the location extractor found, and compound/hotel/shop names it did not, become one
  mask character followed by their kind (金隅时代城小区 → ＃小区, 万豪酒店 → ＃酒店): the kind
  says something (a 医院, a 学校), the name nothing;
- every run of digits becomes 9 (phone numbers, 3号楼2单元502, dates, 12路 → 9路);
- a letter's preamble and closing courtesies (尊敬的领导, 您好, 此致敬礼, 望…重视) and a call
  transcript's lead-in (市民来电反映：) are dropped, so the body is what is weighed.
The result is what the character n-grams see; jieba cuts it into the words. Pure functions,
no Rasa: the benchmark and the tests use them directly.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from bot.text import MAX_NLU_CHARS, normalise

MASK_CHAR = "＃"

# kinds of named place, longest first: the tail of a name that is kept after the mask. Not the
# administrative ones (区, 街道, 社区, 村...): a district or street says nothing about the
# problem, and "＃区＃街道＃社区" alone would read as a location answer.
_KINDS = sorted("""小区 花园 家园 佳园 嘉园 名苑 公寓 大厦 广场 新村 市场 公园 商场 超市 学校 小学 中学 幼儿园 医院
    卫生院 诊所 大街 大道 苑 城 府 酒店 饭店 宾馆 公司 厂 站 大学""".split(), key=len, reverse=True)
_KIND_AT_END = re.compile("(?:" + "|".join(map(re.escape, _KINDS)) + ")$")

# names the extractor does not know: 2–8 name characters then a compound/hotel/shop kind
_NAME_KINDS = "小区|花园|家园|佳园|嘉园|名苑|公寓|大厦|广场|新村|商场|酒店|饭店|宾馆|时代城|国际城|新城|苑|府"
_UNKNOWN_NAME = re.compile(r"([\u4e00-\u9fa5A-Za-z]{2,8}?)(" + _NAME_KINDS + r")(?:小区)?")
_NAME_LEADERS = re.compile(
    r"^(?:关于|投诉|举报|反映|请求|希望|建议|要求|我们|咱们|我家|家住|住在|位于|就在|是在|在|我|是|的|了|和|到|去|从|这个|那个|这|那|某个|某|对|给|里|也)+")
_NOT_NAMES = {"政府", "市政府", "区政府", "王府", "城", "府"}

_DIGITS = re.compile(r"\d+(?:[.:：]\d+)?")
_BOILERPLATE = re.compile("|".join([
    r"尊敬的[^\s：:，,！!。]{0,8}?(?:领导|市长|书记|同志|工作人员|先生|女士)们?[：:，,！!。]?",
    r"(?:各位|相关|有关)?领导(?:们)?[，,]?(?:您|你)好[！!，,。：:]?",
    r"(?:您|你)们?好[！!，,。：:]?",
    r"此致\s*敬礼[！!。]?", r"此致[！!。]?", r"敬礼[！!。]?",
    r"(?:恳请|望|希望|请)(?:贵|相关|有关|各)?(?:部门|单位|领导)?(?:给予|予以)?(?:高度)?重视[！!。，,]?",
    r"盼复[！!。]?", r"特此(?:反映|来信|致信|投诉|举报)?[！!。]?",
    r"(?:非常|十分)?(?:感谢|谢谢)(?:您|你们|领导)?[！!。]?$",
    r"^(?:市民|群众)?来电(?:人)?(?:反映|称|表示|诉求)[：:，,]?",
]))
_SPACES = re.compile(r"\s+")


def _keep_kind(name: str) -> str:
    m = _KIND_AT_END.search(name)
    return MASK_CHAR + (m.group(0) if m else "")


def mask_unknown_names(text: str) -> str:
    def repl(m: re.Match) -> str:
        name, kind = m.group(1), m.group(2)
        lead = _NAME_LEADERS.match(name)
        keep = lead.group(0) if lead else ""
        rest = name[len(keep):]
        if len(rest) < 2 or (rest + kind) in _NOT_NAMES or MASK_CHAR in rest:
            return m.group(0)
        return keep + MASK_CHAR + ("小区" if m.group(0).endswith("小区") else kind)

    return _UNKNOWN_NAME.sub(repl, text)


def reading_text(text: str, spans: Sequence[Sequence[int]] = ()) -> str:
    """The text the classifier reads (lower-cased; see the module docstring)."""
    text = normalise(text or "")[:MAX_NLU_CHARS]
    for start, end in sorted(spans or (), key=lambda s: -s[0]):
        if end <= len(text):
            text = text[:start] + _keep_kind(text[start:end]) + text[end:]
    text = mask_unknown_names(text)
    text = _DIGITS.sub("9", text)
    stripped = _BOILERPLATE.sub(" ", text)
    if stripped.strip():  # a message that is only 您好 stays itself
        text = stripped
    return _SPACES.sub(" ", text).strip().lower()


def reading_words(reading: str) -> list[str]:
    import jieba

    return [w for w in jieba.lcut(reading) if w.strip()]


def reading(text: str, spans: Sequence[Sequence[int]] = ()) -> tuple[str, list[str]]:
    r = reading_text(text, spans)
    return r, reading_words(r)
