"""Text helpers shared by the NLU components, the actions and the console.

Normalisation is length-preserving (one character in, one character out) so that
entity offsets computed on normalised text are valid on the text as typed.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

MAX_NLU_CHARS = 1000  # longer messages are kept whole but only their head is classified

_ZERO_WIDTH = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"}


def _normalise_char(ch: str) -> str:
    if ch in _ZERO_WIDTH or ch == "\u3000":
        return " "
    cat = unicodedata.category(ch)
    if cat in ("Cc", "Cf", "Zl", "Zp", "Zs") and ch != " ":
        return " "
    if "\uff01" <= ch <= "\uff5e":  # full-width ASCII block
        return chr(ord(ch) - 0xFEE0)
    return ch


def normalise(text: str) -> str:
    """Full-width ASCII to half-width, odd spaces/controls to a plain space; same length."""
    return "".join(_normalise_char(ch) for ch in text)


_CJK_OR_ALNUM = re.compile(r"[0-9A-Za-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_MONGOLIAN = re.compile(r"[\u1800-\u18af\U00011660-\U0001167f]")  # Mongolian and its supplement


def input_issue(text: str | None) -> str | None:
    """Why a message cannot be understood as written, or None when it can be read.

    "empty": nothing but whitespace/control characters;
    "no_text": no letter, digit or Chinese character at all (emoji, punctuation);
    "mongolian": traditional Mongolian script and no Chinese: a written language the
    assistant cannot read yet, told apart from noise (Inner Mongolia's second official script).
    """
    if text is None or not normalise(text).strip():
        return "empty"
    if not _CJK_OR_ALNUM.search(normalise(text)):  # full-width ＡＢＣ１２３ count too
        return "mongolian" if _MONGOLIAN.search(text) else "no_text"
    return None


_SEP = r"[\s\-.]{0,2}"  # 139 1234 5678, 139-1234-5678, 139 - 1234 - 5678
# 139 1234 5678, 1 3 9 1 2 3 4 5 6 7 8 (and 一三九…: see _CN_DIGITS)
_PHONE_CANDIDATE = re.compile(r"(?<!\d)(?:\+?86[\s-]?)?(1" + _SEP + r"[3-9](?:" + _SEP + r"\d){9})(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)(0\d{2,3})[\s-]?(\d{7,8})(?!\d)")
# 18 characters however grouped: 110101199003071234, 110101 19900307 1234, 1101 0119 9003 0712 34
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d(?:[\s-]?\d){16}[\s-]?[0-9Xx])(?![0-9A-Za-z])")
# numbers said in Chinese digits (一三九一二三四五六七八): matched as Arabic, same length
_CN_DIGITS = str.maketrans("〇零一幺二两三四五六七八九", "0011223456789")

# --- what a resident said about themselves (public output only: see mask_personal_data) ---
_SURNAMES = (
    "欧阳|司马|诸葛|上官|东方|皇甫|慕容|令狐|"
    "王|李|张|刘|陈|杨|黄|赵|吴|周|徐|孙|马|朱|胡|郭|何|高|林|罗|郑|梁|谢|宋|唐|许|韩|冯|邓|曹|彭|曾|肖|"
    "田|董|袁|潘|于|蒋|蔡|余|杜|叶|程|苏|魏|吕|丁|任|沈|姚|卢|姜|崔|钟|谭|陆|汪|范|金|石|廖|贾|夏|韦|付|"
    "方|白|邹|孟|熊|秦|邱|江|尹|薛|闫|段|雷|侯|龙|史|陶|黎|贺|顾|毛|郝|龚|邵|万|钱|严|覃|武|戴|莫|孔|向|汤|"
    "常|温|康|施|文|牛|樊|葛|邢|安|齐|易|乔|伍|庞|颜|倪|庄|聂|章|鲁|岳|翟|殷|詹|申|欧|耿|关|兰|焦|俞|左|柳|"
    "甘|祝|包|宁|尚|符|舒|阮|柯|纪|梅|童|凌|毕|单|季|裴|霍|涂|成|苗|谷|盛|曲|翁|冉|骆|蓝|路|游|辛|靳|管|柴|"
    "蒙|鲍|华|喻|祁|蒲|房|滕|屈|饶|解|牟|艾|尤|阳|时|穆|农|司|卓|古|吉|缪|简|车|项|连|芦|麦|褚|娄|窦|戚|岑|"
    "景|党|宫|费|卜|冷|晏|席|卫|米|柏|宗|瞿|桂|全|佟|应|臧|闵|苟|邬|边|卞|姬|师|和|仇|栾|隋|商|刁|沙|荣|巫|"
    "寇|桑|郎|甄|丛|仲|虞|敖|巩|明|佘|池|查|麻|苑|迟|邝|乌|云|其|那|萨|达|包"
)
_CJK = "[\u4e00-\u9fff]"
_TITLE = "先生|女士|小姐|师傅|阿姨|大爷|大妈|大姐|大哥|老师|同志|奶奶|爷爷|老人|老太太"
_NAMES = (
    # 我叫王小明 / 名字是… / 姓名：… / 联系人：…: whatever follows is a name
    re.compile(r"(我叫|名叫|名字是|名字叫|姓名[是为:：\s]*|联系人[是为:：\s]*|署名[:：\s]*|联系我[:：]\s*)(" + _CJK + "{2,3})"),
    # 我姓王，叫王小明: 叫 alone only before a surname (叫了物业 stays)
    re.compile(r"((?:(?<=[，,。；;\s])|^)叫)((?:" + _SURNAMES + ")" + _CJK + "{1,2})"),
    # 我是王小明 / 本人王小明: a name only when it starts with a surname (我是业主 stays)
    re.compile(r"(我是|本人|我就是|这里是)((?:" + _SURNAMES + ")" + _CJK + "{1,2})(?=[^\u4e00-\u9fff]|$|(?:" + "，|电话|手机|住|在|家|联系" + "))"),
    # 姓王的 / 我姓王 / 免贵姓王
    re.compile(r"(姓)((?:" + _SURNAMES + r"))(?=的|，|,|。|\s|$|" + _TITLE + ")"),
    # 王先生 / 李阿姨 / 欧阳女士
    re.compile(r"()((?:" + _SURNAMES + "))(?=" + _TITLE + ")"),
    # 1201室 赵大海 138****2233: a surname-led name standing next to a (masked) phone number
    re.compile(r"((?:(?<=[\s,，:：、])|^))((?:" + _SURNAMES + ")" + _CJK + r"{1,2})"
               r"(?=[\s,，:：]*(?:电话|手机|联系电话)?[:：]?\s*1[3-9]\d)"),
)

# --- exact house numbers: 3号楼2单元502室, 3栋502, 3-2-502 (the compound and road stay) ---
_NUM = r"(?:\d+|[一二三四五六七八九十百两〇零]+)"
# a building / entrance / unit / floor / flat designation: 7幢, 2门, 东单元, 3号楼, 502室
_HOUSE_PART = (
    _NUM + r"\s*(?:号楼|号院|栋楼?|幢|座|号?单元|号?门(?!口|前|外|卫)|层|楼(?!上|下|道|房|顶)|室|户|号房)"
    r"|[A-Za-z]\s*(?:座|栋|区)"
)
# after one, everything that still designates the flat: more parts, 402, 五零二, 12号
_HOUSE = re.compile(
    r"(?:" + _HOUSE_PART + r")(?:[\s,，、-]*(?:" + _HOUSE_PART + r"|[东西南北中]\s*单元|" + _NUM + r"\s*号(?!线|路|街|院)"
    r"|\d{3,4}(?![\d号路街道线])|[一二三四五六七八九〇零]{3,4}(?![号路街道线]))+)*"
    r"|(?<![\d\-])\d{1,3}-\d{1,2}-\d{3,4}(?![\d\-])"
)
_HOUSE_NUM = re.compile(r"\d+|[一二三四五六七八九十百两〇零]+|(?<![A-Za-z])[A-Za-z](?=\s*(?:座|栋|区))"
                        r"|[东西南北中](?=\s*单元)")


def find_phone(text: str) -> str | None:
    """The first Chinese mobile or landline number in text, digits only (landline as 0471-xxxxxxx)."""
    t = normalise(text)
    m = _PHONE_CANDIDATE.search(t)
    if m:
        return re.sub(r"\D", "", m.group(1))
    m = _LANDLINE.search(t)
    if m:
        return f"{m.group(1)}-{m.group(2)}"
    return None


def valid_phone(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    if re.fullmatch(r"1[3-9]\d{9}", digits):
        return True
    return bool(re.fullmatch(r"0\d{2,3}\d{7,8}", digits))


def mask_phone(phone: str | None) -> str:
    if not phone:
        return ""
    if "*" in phone:
        return phone  # masked already (the complaint form's phone slot holds 139****5678)
    digits = re.sub(r"\D", "", phone)
    if len(digits) >= 7:
        return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
    return "*" * len(digits)


def _sub(pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str], text: str,
         keep_first: bool = False, cn_digits: bool = False) -> str:
    """pattern.sub matched on the normalised text (full-width digits, ideographic spaces),
    replacing the same spans of the text as typed (normalise keeps every offset);
    keep_first: group 1 (the words before a name) stays as typed."""
    t = normalise(text)
    if cn_digits:
        t = t.translate(_CN_DIGITS)
    out, pos = [], 0
    for m in pattern.finditer(t):
        out.append(text[pos:m.start()])
        out.append(repl(m) if m.lastindex is None or m.lastindex < 2 or not keep_first
                   else text[m.start(1):m.end(1)] + repl(m)[len(m.group(1)):])
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def mask_personal_data(text: str, public: bool = False, address: bool = False) -> str:
    """Mask phone and ID numbers (logs, exports, the review inbox), full-width and spaced
    ones included. public=True (what anyone may read: Open311) also masks the names a
    resident gave (我是王小明 → 我是***, 王先生 → *先生) and exact house numbers
    (金宇文苑3号楼2单元502室 → 金宇文苑*号楼*单元*室). address=True (with public: an address
    field) drops everything from the first building/unit/flat designation on (a name or a
    number written after the flat is not the place): 赛马场社区7幢2门402 赵大海 → 赛马场社区*."""
    if not text:
        return text

    def id_mask(m: re.Match[str]) -> str:
        chars = re.sub(r"[\s-]", "", m.group(1))
        return chars[:3] + "*" * 11 + chars[-4:]

    text = _sub(_ID_NUMBER, id_mask, text, cn_digits=True)
    text = _sub(_PHONE_CANDIDATE, lambda m: mask_phone(m.group(1).translate(_CN_DIGITS)), text, cn_digits=True)
    text = _sub(_LANDLINE, lambda m: m.group(1) + "-****" + m.group(2)[-2:], text)
    if public:
        for pattern in _NAMES:
            text = _sub(pattern, lambda m: m.group(1) + "*" * len(m.group(2)), text, keep_first=True)
        if address:
            m = _HOUSE.search(normalise(text))
            if m:
                return text[:m.start()].rstrip(" ,，、-") + "*"
        typed = text  # the span as typed (full-width commas stay), its numbers starred
        text = _sub(_HOUSE, lambda m: _HOUSE_NUM.sub("*", typed[m.start():m.end()]), text)
    return text


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Invisible formatting that can disguise what a worker reads: bidi embeddings/overrides/
# isolates (U+202A–202E, U+2066–2069), marks (U+200E/200F, U+061C), zero-width characters
# and the BOM, line/paragraph separators, and CR/LF/tab (a message is one line: a CR/LF
# could print a fake second line such as 伪造行：已办结 under a ticket's description).
_INVISIBLE = "\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
# U+180E, the Mongolian vowel separator, is part of Mongolian spelling (ᠪᠠᠢᠨ᠎ᠠ): kept between
# Mongolian letters, treated as invisible formatting anywhere else.
_STRAY_MVS = re.compile("(?<![\u1820-\u18af])\u180e|\u180e(?![\u1820-\u18af])")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f" + _INVISIBLE + "]")
_DISPLAY_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f" + _INVISIBLE.replace("\u2028-\u202e", "\u202a-\u202e") + "]")
_DISPLAY_BREAK = re.compile("\r\n|[\r\n\u2028\u2029\x85]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable(text: str) -> bool:
    """True when text holds what no store can keep: NUL (PostgreSQL refuses it) or a lone
    UTF-16 surrogate (not encodable as UTF-8; JSON's "\\ud800" decodes to one)."""
    return bool(_UNSTORABLE.search(text))


def clean_message(text: str) -> str:
    """A message or single-line field as the bot and the stores can take it (every channel's
    input cleaning): control characters (NUL, CR/LF, tab included) and invisible formatting
    characters (bidi overrides, zero-width, BOM) become spaces, lone surrogates U+FFFD; same
    length, nothing else touched."""
    return _SURROGATE.sub("\ufffd", _STRAY_MVS.sub(" ", _CONTROL.sub(" ", text)))


def display_text(text: str, one_line: bool = False) -> str:
    """Text as a page may show it: invisible formatting characters stored before input
    cleaning are shown as their code point (‹U+202E›) instead of reordering what follows;
    one_line=True shows line breaks as ⏎ so stored text cannot start a line of its own."""
    text = _STRAY_MVS.sub("‹U+180E›", _DISPLAY_INVISIBLE.sub(lambda m: f"‹U+{ord(m.group(0)):04X}›", text))
    return _DISPLAY_BREAK.sub(" ⏎ ", text) if one_line else text


def shorten(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
