"""bot/text.py: normalisation, unreadable input, phone numbers and masking."""

from __future__ import annotations

import pytest

from bot.text import find_phone, input_issue, mask_personal_data, mask_phone, normalise, valid_phone

# --- normalise ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＡＢＣ１２３！", "ABC123!"),
        ("电话：１３８，好的？", "电话:138,好的?"),
        ("ｈｔｔｐ：／／ｘ．ｃｎ", "http://x.cn"),
        ("新城区\u3000公主府", "新城区 公主府"),  # ideographic space
        ("a\u200bb\u200cc\u200dd\u2060e\ufefff", "a b c d e f"),  # zero-width characters
        ("a\x00b\x07c\nd\te\rf", "a b c d e f"),  # control characters
        ("a\u00a0b\u2028c", "a b c"),  # no-break space, line separator
        ("新城区公主府社区。", "新城区公主府社区。"),  # Chinese text and 。 untouched
        ("plain ascii 123", "plain ascii 123"),
    ],
)
def test_normalise_maps_characters(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize("raw", ["ＡＢＣ\u3000新城区\u200b１２３\x07！", "😀遛狗\ufeff", "", "\u3000\u3000"])
def test_normalise_is_length_preserving(raw: str) -> None:
    assert len(normalise(raw)) == len(raw)


def test_normalise_keeps_offsets_of_names() -> None:
    raw = "ＡＢＣ\u3000新城区公主府社区"
    assert normalise(raw)[4:7] == raw[4:7] == "新城区"


# --- input_issue ---------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "   ", "\u3000\u3000", "\u200b\ufeff", "\x00\x07", "\n\t \r"])
def test_input_issue_empty(text) -> None:
    assert input_issue(text) == "empty"


@pytest.mark.parametrize("text", ["😀", "😀😀👍", "？？？", "。。。", "!!!", "……", "😡！", "～～"])
def test_input_issue_no_text(text: str) -> None:
    assert input_issue(text) == "no_text"


@pytest.mark.parametrize("text", ["ᠰᠠᠢᠨ ᠪᠠᠢᠨ᠎ᠠ ᠤᠤ", "ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ᠌ ᠃", "ᠰᠠᠢᠨ 😀"])
def test_input_issue_mongolian(text: str) -> None:
    # the outside tester's Mongolian got the emoji answer (我只能看懂文字)
    assert input_issue(text) == "mongolian"


@pytest.mark.parametrize("text", ["你好", "楼下有人遛狗不牵绳", "ok", "12345", "😀 ok", "！狗！", "ＡＢＣ", "１３８１２３４５６７８"])
def test_input_issue_readable(text: str) -> None:
    assert input_issue(text) is None


# --- find_phone / valid_phone --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("13812345678", "13812345678"),
        ("我的电话13812345678谢谢", "13812345678"),
        ("电话138 1234 5678", "13812345678"),
        ("138-1234-5678", "13812345678"),
        ("+86 13812345678", "13812345678"),
        ("+86-138-1234-5678", "13812345678"),
        ("+8613812345678", "13812345678"),
        ("１３８１２３４５６７８", "13812345678"),  # full-width digits
        ("座机0471-1234567", "0471-1234567"),
        ("0471 1234567", "0471-1234567"),
        ("04711234567", "0471-1234567"),
        ("０４７１－６２３４５６７", "0471-6234567"),
        ("010-12345678", "010-12345678"),
    ],
)
def test_find_phone_finds(text: str, expected: str) -> None:
    assert find_phone(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "1381234567",  # 10 digits: too short
        "138123456789",  # 12 digits: not a phone number
        "123456789012",
        "12812345678",  # no mobile network starts with 12
        "0471-123456",  # local part too short
        "12345",
        "我家在3号楼2单元",
        "没有电话",
        "",
        "身份证150102199001011234",
    ],
)
def test_find_phone_rejects(text: str) -> None:
    assert find_phone(text) is None


def test_find_phone_takes_the_first_mobile() -> None:
    assert find_phone("13812345678 或 13998765432") == "13812345678"


@pytest.mark.parametrize("value", ["13812345678", "138-1234-5678", "138 1234 5678", "19912345678", "0471-1234567", "04711234567", "010-12345678"])
def test_valid_phone_true(value: str) -> None:
    assert valid_phone(value) is True


@pytest.mark.parametrize("value", ["1381234567", "138123456789", "12812345678", "12345", "", "abc", "4711234567"])
def test_valid_phone_false(value: str) -> None:
    assert valid_phone(value) is False


# --- masking --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("13812345678", "138****5678"),
        ("138-1234-5678", "138****5678"),
        ("0471-1234567", "047****4567"),
        ("12345", "*****"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_phone(phone, expected: str) -> None:
    assert mask_phone(phone) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的电话13812345678，请回电", "我的电话138****5678，请回电"),
        ("电话 138 1234 5678", "电话 138****5678"),
        ("+8613812345678", "138****5678"),
        ("座机0471-1234567", "座机0471-****67"),
        ("身份证150102199001011234", "身份证150***********1234"),
        ("身份证号15010219900101123X。", "身份证号150***********123X。"),
        ("身份证号15010219900101123x", "身份证号150***********123x"),
        (
            "王女士 13812345678 身份证150102199001011234 新城区公主府社区",
            "王女士 138****5678 身份证150***********1234 新城区公主府社区",
        ),
    ],
)
def test_mask_personal_data(text: str, expected: str) -> None:
    assert mask_personal_data(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "新城区公主府社区3号楼门口有人遛狗不牵绳",
        "订单号123456789012345678901",  # 21 digits: neither a phone nor an ID number
        "工单 QC-261124-0003 进度",
        "12345热线",
        "",
    ],
)
def test_mask_personal_data_leaves_other_text_unchanged(text: str) -> None:
    assert mask_personal_data(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "我的电话13812345678，身份证号15010219900101123X",
        "座机0471-1234567 手机 138-1234-5678",
        "+86 13812345678",
    ],
)
def test_mask_personal_data_is_idempotent(text: str) -> None:
    once = mask_personal_data(text)
    assert once != text
    assert mask_personal_data(once) == once


# --- public masking (Open311): names the resident gave and exact house numbers too --------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我是王小明，电话13912345678", "我是***，电话139****5678"),
        ("我是王小明电话13912345678", "我是***电话139****5678"),
        ("我叫李四，住金宇文苑3号楼2单元502室", "我叫**，住金宇文苑*号楼*单元*室"),
        ("楼上漏水到我家，我叫王小明，电话139 1234 5678，身份证150102199001011234",
         "楼上漏水到我家，我叫***，电话139****5678，身份证150***********1234"),
        ("本人张伟，手机号139-1234-5678", "本人**，手机号139****5678"),
        ("联系人：李秀英 电话０４７１－６６２２３３４", "联系人：*** 电话0471-****34"),
        ("姓名:赵敏，13812345678", "姓名:**，138****5678"),
        ("姓王的邻居天天半夜装修", "姓*的邻居天天半夜装修"),
        ("我姓刘，住在12楼", "我姓*，住在*楼"),
        ("王先生反映井盖丢了", "*先生反映井盖丢了"),
        ("请联系欧阳女士", "请联系**女士"),
        ("电话１３９１２３４５６７８", "电话139****5678"),
        ("电话１３９　１２３４　５６７８谢谢", "电话139****5678谢谢"),
        ("手机 139  1234  5678", "手机 139****5678"),
        ("身份证１５０１０２１９９００１０１１２３Ｘ", "身份证150***********123X"),
        ("身份证150102 19900101 1234", "身份证150***********1234"),
        ("金宇文苑3栋502", "金宇文苑*栋*"),
        ("公主府小区二号楼三单元五层", "公主府小区*号楼*单元*层"),
        ("锡林南路3-2-502门口漏水", "锡林南路*-*-*门口漏水"),
        ("A座1203室外噪音", "*座*室外噪音"),
        # what a second outside test still read (and variants)
        ("赛马场社区7幢2门402", "赛马场社区*幢*门*"),
        ("赛马场社区７幢２门４０２楼道灯不亮", "赛马场社区*幢*门*楼道灯不亮"),
        ("22号院6号楼东单元1102", "*号院*号楼*单元*"),
        ("如意小区3号楼西单元501室", "如意小区*号楼*单元*室"),
        ("三号楼二单元五零二", "*号楼*单元*"),
        ("我姓王，叫王小明", "我姓*，叫***"),
        ("联系我：马云飞", "联系我：***"),
        ("金桥小区1201室 赵大海 13804712233", "金桥小区*室 *** 138****2233"),
        ("1201室，刘德华，13804712233", "*室，***，138****2233"),
        ("电话1 3 9 1 2 3 4 5 6 7 8", "电话139****5678"),
        ("手机一三九一二三四五六七八", "手机139****5678"),
        ("手机幺三九一二三四五六七八", "手机139****5678"),
        ("身份证1101 0119 9003 0712 34", "身份证110***********1234"),
        ("身份证1501-0219-9001-0112-3X", "身份证150***********123X"),
    ],
)
def test_mask_personal_data_public(text: str, expected: str) -> None:
    assert mask_personal_data(text, public=True) == expected
    assert mask_personal_data(expected, public=True) == expected  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "我是业主，楼下烧烤太吵",
        "我是附近居民",
        "我是张家营子的居民",
        "新华大街12号门口有坑",
        "地铁1号线出口",
        "2026-11-24 晚上",
        "工单 QC-261124-0003 进度",
        "12345热线",
        "楼上漏水",
        "小区3号门口堆了垃圾",
        "东单元门口路灯坏了",
        "叫了物业也不管",
    ],
)
def test_mask_personal_data_public_leaves_places_and_words(text: str) -> None:
    assert mask_personal_data(text, public=True) == text


@pytest.mark.parametrize("address,expected", [
    ("新城区公主府社区1201室 赵大海 13804712233", "新城区公主府社区*"),
    ("赛马场社区7幢2门402", "赛马场社区*"),
    ("新华大街12号门口", "新华大街12号门口"),
    ("锡林北路街道车站西街社区", "锡林北路街道车站西街社区"),
])
def test_mask_personal_data_public_address_stops_at_the_building(address: str, expected: str) -> None:
    assert mask_personal_data(address, public=True, address=True) == expected
