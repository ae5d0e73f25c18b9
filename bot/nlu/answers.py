"""Reading residents' typed answers: which category an answer names, the complaint without
the personal details volunteered in it, and the answer to the 回访 question. Pure text logic,
no Rasa imports (bot/conversation.py asks the questions)."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MIN_DESCRIPTION_CHARS = 4

_NEGATED = re.compile(r"(?:不是|并非|不属于|而不是|不算)[^，,。；;！!？?、\s]*")
_NONE_OF_THEM = re.compile(r"都不是|都不对|都不属于|以上都不|哪个都不|两个都不|其他|其它|别的问题|别的类")
# personal details the resident volunteers: the phone becomes the contact, none of it is
# the description (it is shown in the summary, sent to units and may be disclosed)
_ID_CLAUSE = re.compile(r"(?:我的)?身份证(?:号码|号)?(?:是|为|[:：])?\s*[0-9]{6}\s*[0-9]{8}\s*[0-9]{3}[0-9Xx]|(?<![0-9])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
_PHONE_CLAUSE = re.compile(r"(?:我的?|本人)?(?:联系)?(?:电话|手机|手机号|号码|联系方式)(?:号码|号)?(?:是|为|[:：])?\s*"
                           r"(?:\+?86[\s-]?)?(?:1[3-9]\d(?:[\s-]?\d){8}|0\d{2,3}[\s-]?\d{7,8})|"
                           r"(?<!\d)(?:\+?86[\s-]?)?1[3-9]\d(?:[\s-]?\d){8}(?!\d)")
_NAME_CLAUSE = re.compile(r"^(?:我|本人)(?:叫|姓名是|名字是|是(?!业主|住户|居民|租户|房东|老人|学生|"
    r"家长|这|那|本|楼|一|个))[\u4e00-\u9fff·]{2,4}$|^(?:我|本人)姓[\u4e00-\u9fff]{1,2}$|"
    r"^本人[\u4e00-\u9fff·]{2,4}$")
# a contact clause ("联系方式：138…"): the classifier reads the complaint better without it
_CONTACT_CLAUSE = re.compile(r"(?:联系方式|联系电话|电话|手机)(?:号码|号)?(?:是|为|[:：])?\s*(?:\+?86[\s-]?)?(?:1[3-9]\d|0\d{2,3})")
_CLAUSE_SPLIT = re.compile(r"([，,。；;！!\s]+)")


def meaningful_chars(text: str, minus: Sequence[str] = ()) -> int:
    for m in minus:
        text = text.replace(m, "")
    return len(re.findall(r"[0-9A-Za-z\u4e00-\u9fff]", text))



class CategoryMatcher:
    """Which category a typed answer names ("其他", "都不是", "是环境污染问题", "不对，是下水道堵了，
    不是噪音"). Built from the routing catalogue's names and keywords, so a category added
    there is understood without code changes."""

    def __init__(self, categories: Mapping[str, tuple[str, Sequence[str]]]):
        self.codes = list(categories)
        self.names: dict[str, list[str]] = {}
        self.keywords: dict[str, list[str]] = {}
        for code, (name, keywords) in categories.items():
            parts = [p for p in re.split(r"[/／、与和及（）()]", name or "") if len(p) >= 2]
            self.names[code] = sorted({name, *parts} - {""}, key=len, reverse=True)
            self.keywords[code] = [k for k in keywords or () if k]

    @classmethod
    def from_names(cls, names: Mapping[str, str]) -> CategoryMatcher:
        return cls({code: (name, ()) for code, name in names.items()})

    def choose(self, text: str, intent: str | None = None, exclude: Sequence[str] = (),
               offered: Sequence[str] = ()) -> str | None:
        """The category the text names; None when it names none (or only excluded ones)."""
        said = _NEGATED.sub("", text or "")  # "不是噪音" names what it is not
        allowed = [c for c in self.codes if c not in exclude]
        # 1. a category's name or a part of it ("市政设施", "噪声扰民", "垃圾"): the longest wins
        best = self._best({c: max((len(n) for n in self.names[c] if n in said), default=0) for c in allowed})
        if best:
            return best
        # 2. "都不是", "其他": none of the offered ones
        if "other" in allowed and _NONE_OF_THEM.search(text or ""):
            return "other"
        # 3. the catalogue's keywords (化工厂, 下水道, 狗): most keyword characters wins
        best = self._best({c: sum(len(k) for k in self.keywords[c] if k in said) for c in allowed}, offered)
        if best:
            return best
        # 4. the classifier's category, if it is one
        if intent in allowed and intent != "other":
            return intent
        # 5. a near name ("环境污染" ~ "环境卫生"): shared two-character pieces, offered ones first
        grams = _bigrams(said)
        for pool in (list(offered), allowed):
            scores = {c: max((len(grams & _bigrams(n)) for n in self.names[c]), default=0)
                      for c in pool if c in allowed and c != "other"}
            best = self._best(scores)
            if best:
                return best
        return None

    def named(self, text: str, prefer: Sequence[str] = ()) -> str | None:
        """The category the text names by a name or the catalogue's keywords only (no guess)."""
        said = _NEGATED.sub("", text or "")
        allowed = [c for c in self.codes if c != "other"]
        return (self._best({c: max((len(n) for n in self.names[c] if n in said), default=0) for c in allowed}, prefer)
                or self._best({c: sum(len(k) for k in self.keywords[c] if k in said) for c in allowed}, prefer))

    @staticmethod
    def _best(scores: Mapping[str, int], prefer: Sequence[str] = ()) -> str | None:
        top = max(scores.values(), default=0)
        if top <= 0:
            return None
        winners = [c for c, v in scores.items() if v == top]
        if len(winners) > 1:
            winners = [c for c in winners if c in prefer]
        return winners[0] if len(winners) == 1 else None


def category_without_contact(text: str, ranking: Sequence[Mapping[str, Any]], matcher: CategoryMatcher,
                             floor: float = 0.08) -> str | None:
    """A complaint the classifier missed because of its contact clause ("公主府社区下水井盖缺失，
    联系方式：138…" read as inform): the category the text names without the clause (the
    catalogue's names and keywords, ties decided by the classifier's ranking), else the
    likeliest category of the ranking. None when there is no contact clause or no category."""
    if not text or not _CONTACT_CLAUSE.search(text):
        return None
    stripped = strip_personal_details(text)
    if stripped == text or meaningful_chars(stripped) < MIN_DESCRIPTION_CHARS:
        return None
    ranked = [str(r.get("name")) for r in ranking
              if r.get("name") in matcher.codes and float(r.get("confidence") or 0) >= floor]
    named = matcher.named(stripped, prefer=ranked)
    if named:
        return named
    return next((c for c in ranked if c != "other"), None)


def _bigrams(text: str) -> set:
    han = "".join(re.findall(r"[\u4e00-\u9fff]", text or ""))
    return {han[i:i + 2] for i in range(len(han) - 1)}


def strip_personal_details(text: str) -> str:
    """The complaint without the resident's name, phone and ID number clauses: "楼上漏水到我家，
    我叫王小明，电话139…，身份证…" → "楼上漏水到我家". The phone is taken separately. A text
    without such details comes back exactly as typed."""
    if not text:
        return text
    cleaned = _PHONE_CLAUSE.sub("", _ID_CLAUSE.sub("", text))
    removed = cleaned != text
    pieces = _CLAUSE_SPLIT.split(cleaned)
    kept: list[str] = []
    for i in range(0, len(pieces), 2):
        clause, sep = pieces[i], (pieces[i + 1] if i + 1 < len(pieces) else "")
        if _NAME_CLAUSE.match(clause.strip()):
            removed = True
            continue
        if not re.search(r"[0-9A-Za-z\u4e00-\u9fff]", clause) and removed:
            continue  # what is left of a removed number's clause
        kept.append(clause + sep)
    if not removed:
        return text
    out = re.sub(r"([，,。；;！!\s])[，,。；;！!\s]+", r"\1", "".join(kept))  # "；，" left by a removal
    return re.sub(r"^[，,；;\s]+|[，,；;\s]+$", "", out)


# the resident's answer to the 回访 question (办结: 问题解决了吗？您满意吗？)
_UNSOLVED = re.compile(r"没有?解决|未解决|不解决|解决不了|没有?修好|没修|还没有?(修|弄|处理|解决|好)|还是(没|不)|仍然(没|不)|"
                       r"依然|依旧|老样子|没有?变化|没有?改善|没人来|没人管|没有?处理|根本没|又坏了|又开始")
_UNSATISFIED = re.compile(r"不满意|不太满意|很不满|太差|很差|非常差|差评|敷衍|不负责")
_BASIC = re.compile(r"基本满意|比较满意|还行|还可以|一般般?|凑合|马马虎虎|还算满意")
_SATISFIED = re.compile(r"(?<!不)(?<!不太)(?<!基本)(?<!比较)(?<!还算)满意|好评|非常好|很好|点赞|辛苦了")
_SOLVED = re.compile(r"解决了|修好了|弄好了|处理好了|已经好了|好了|搞定了?|没问题了")
FOLLOW_UP_INTENTS = {
    "followup_satisfied": (True, "满意"),
    "followup_basic": (True, "基本满意"),
    "followup_unsatisfied": (True, "不满意"),
    "followup_unsolved": (False, None),
}


def followup_answer(text: str, intent: str | None, from_button: bool = False) -> tuple[bool, str | None] | None:
    """(solved, satisfaction) from the resident's answer to the 回访 question, in their words
    or by button; None when it answers neither (ask again)."""
    if from_button or not text:
        return FOLLOW_UP_INTENTS.get(intent or "")
    if _UNSOLVED.search(text):
        return (False, None)
    if _UNSATISFIED.search(text):
        return (True, "不满意")
    if _BASIC.search(text):
        return (True, "基本满意")
    if _SATISFIED.search(text):
        return (True, "满意")
    if _SOLVED.search(text):
        return (True, None)  # solved, no rating given
    return FOLLOW_UP_INTENTS.get(intent or "")

