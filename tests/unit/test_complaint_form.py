"""bot/conversation.py: the complaint form's turn logic, with the real gazetteer."""

from __future__ import annotations

from typing import Any

import pytest

from bot.conversation import (
    NO_VALUE,
    ComplaintForm,
    FormStep,
    Turn,
    next_slot,
    required_slots,
    summary_variables,
)
from bot.reference.gazetteer import default_gazetteer
from bot.reference.locations import LocationResolver

DRAFT = "draft-0001"
BUTTON_JINXIU_SAIHAN = '/inform{"community":"150105006034"}'


@pytest.fixture(scope="module")
def form() -> ComplaintForm:
    return ComplaintForm(LocationResolver(default_gazetteer()), new_id=lambda: DRAFT)


def ent(level: str, name: str, text: str, value: str | None = None) -> dict[str, Any]:
    """An entity as the NLU extractor produces it for `name` inside `text`."""
    start = text.index(name)
    return {"entity": level, "value": value or name, "text": name, "start": start, "end": start + len(name)}


def turn(text: str, intent: str | None = "inform", confidence: float = 0.9, *entities, from_button: bool = False) -> Turn:
    return Turn(text, intent, confidence, list(entities), from_button)


def filled(step: FormStep) -> dict[str, Any]:
    return {k: v for k, v in step.slots.items() if v is not None}


BASE = {"category": "dog", "location": "新城区 海拉尔东路街道 公主府社区居委会", "description": "楼下有人遛狗不牵绳",
        "draft_id": DRAFT}


# --- activation -------------------------------------------------------------------


def test_activation_takes_category_and_description_only(form: ComplaintForm) -> None:
    step = form.step({}, None, turn("楼下有人遛狗不牵绳", "dog"))
    assert filled(step) == {"category": "dog", "description": "楼下有人遛狗不牵绳", "draft_id": DRAFT}
    assert step.slots["confirm"] is None and step.slots["pending_description"] is None
    assert "location" not in step.slots and "phone" not in step.slots and "photo" not in step.slots
    assert step.reject is False and step.responses == []
    assert next_slot({**step.slots}) == "location"


def test_activation_with_a_resolved_community(form: ComplaintForm) -> None:
    text = "公主府社区楼下有人遛狗不牵绳"
    step = form.step({}, None, turn(text, "dog", 0.9, ent("community", "公主府社区", text)))
    assert step.slots["location"] == "新城区 海拉尔东路街道 公主府社区居委会"
    assert step.slots["location_status"] == "resolved"
    assert (step.slots["district_code"], step.slots["street_code"], step.slots["community_code"]) == (
        "150102", "150102001", "150102001001")
    assert step.slots["location_candidates"] is None
    assert step.slots["description"] == text
    assert step.slots["category"] == "dog"
    assert next_slot(step.slots) == "photo"


def test_activation_keeps_building_details_in_the_location(form: ComplaintForm) -> None:
    text = "公主府社区3号楼门口有人遛狗不牵绳"
    step = form.step({}, None, turn(text, "dog", 0.9, ent("community", "公主府社区", text)))
    assert step.slots["location"] == "新城区 海拉尔东路街道 公主府社区居委会 3号楼"
    assert step.slots["community_code"] == "150102001001"


def test_activation_takes_a_phone_but_a_typed_link_is_not_a_photo(form: ComplaintForm) -> None:
    # issue 13 item 6: a pasted link made the summary say 照片：已上传
    text = "楼下有人遛狗不牵绳 照片 https://img.example.cn/a.jpg 电话138 1234 5678"
    step = form.step({}, None, turn(text, "dog"))
    assert step.slots["phone"] == "13812345678"
    assert "photo" not in step.slots
    assert next_slot({**step.slots, "location": "某地"}) == "photo"


def test_activation_by_a_non_category_intent_keeps_the_previous_category(form: ComplaintForm) -> None:
    step = form.step({"category": "noise"}, None, turn("楼上每天半夜电钻响", "inform"))
    assert step.slots["category"] == "noise"
    step = form.step({}, None, turn("我要投诉一件事情", "complain"))
    assert step.slots["category"] is None


# --- the order of questions --------------------------------------------------------


def test_next_slot_order() -> None:
    slots: dict[str, Any] = {}
    order = []
    answers = {"category": "dog", "location": "某地", "description": "遛狗不牵绳", "photo": NO_VALUE,
               "phone": "13812345678", "confidential": False, "confirm": True}
    while (name := next_slot(slots)) is not None:
        order.append(name)
        slots[name] = answers[name]
    assert order == ["category", "location", "description", "photo", "phone", "confidential", "confirm"]


def test_confidential_only_asked_when_a_phone_was_given() -> None:
    base = {"category": "dog", "location": "某地", "description": "x", "photo": NO_VALUE}
    assert required_slots({**base, "phone": NO_VALUE}) == [
        "category", "location", "description", "photo", "phone", "confirm"]
    assert next_slot({**base, "phone": NO_VALUE}) == "confirm"
    assert next_slot({**base}) == "phone"
    assert next_slot({**base, "phone": "13812345678"}) == "confidential"
    assert next_slot({**base, "phone": "13812345678", "confidential": True}) == "confirm"
    assert next_slot({**base, "phone": "13812345678", "confidential": True, "confirm": False}) is None


# --- location ------------------------------------------------------------------------


def test_ambiguous_community_then_button(form: ComplaintForm) -> None:
    text = "锦绣社区有人遛狗不牵绳"
    step = form.step({}, None, turn(text, "dog", 0.9, ent("community", "锦绣社区", text)))
    assert step.slots["location"] is None
    assert step.slots["location_status"] == "ambiguous"
    assert step.slots["location_candidates"] == ["150102007003", "150105006034"]
    assert step.slots["location_asked"] == 1
    assert step.slots["description"] == text
    slots = dict(step.slots)
    assert next_slot(slots) == "location"

    button = turn(BUTTON_JINXIU_SAIHAN, "inform", 1.0, {"entity": "community", "value": "150105006034"},
                  from_button=True)
    step = form.step(slots, "location", button)
    assert step.reject is False
    assert step.slots["location"] == "赛罕区 昭乌达南路街道 锦绣社区居委会"
    assert step.slots["location_status"] == "resolved"
    assert step.slots["location_candidates"] is None
    assert (step.slots["district_code"], step.slots["street_code"], step.slots["community_code"]) == (
        "150105", "150105006", "150105006034")


def test_district_then_community_across_two_turns(form: ComplaintForm) -> None:
    slots: dict[str, Any] = {**BASE, "location": None}
    step = form.step(slots, "location", turn("新城区", "inform", 0.9, ent("district", "新城区", "新城区")))
    assert step.slots["location"] is None  # a district alone: ask once more
    assert step.slots["location_status"] == "partial"
    assert step.slots["district_code"] == "150102"
    assert step.slots["street_code"] is None
    assert step.slots["location_asked"] == 1
    slots.update(step.slots)

    step = form.step(slots, "location", turn("锦绣社区", "inform", 0.9, ent("community", "锦绣社区", "锦绣社区")))
    assert step.slots["location"] == "新城区 迎新路街道 锦绣社区居委会"
    assert step.slots["location_status"] == "resolved"
    assert (step.slots["district_code"], step.slots["street_code"], step.slots["community_code"]) == (
        "150102", "150102007", "150102007003")


def test_a_district_is_accepted_on_the_second_ask(form: ComplaintForm) -> None:
    slots = {**BASE, "location": None, "location_asked": 1}
    step = form.step(slots, "location", turn("新城区", "inform", 0.9, ent("district", "新城区", "新城区")))
    assert step.slots["location"] == "新城区"
    assert step.slots["location_status"] == "partial"
    assert step.slots["district_code"] == "150102"


def test_location_answer_without_a_name_is_asked_again(form: ComplaintForm) -> None:
    step = form.step({**BASE, "location": None}, "location", turn("就在那边", "inform"))
    assert step.slots == {"location": None, "location_asked": 1}
    step = form.step({**BASE, "location": None, "location_asked": 1}, "location", turn("幸福家园东门", "inform"))
    assert step.slots["location"] == "幸福家园东门"
    assert step.slots["location_status"] == "unresolved"


def test_a_place_answers_the_location_even_if_classified_as_an_interruption(form: ComplaintForm) -> None:
    text = "公主府社区"
    step = form.step({**BASE, "location": None}, "location", turn(text, "emergency", 0.9, ent("community", text, text)))
    assert step.reject is False
    assert step.slots["community_code"] == "150102001001"


# --- description --------------------------------------------------------------------


def test_short_text_waits_for_more_description(form: ComplaintForm) -> None:
    step = form.step({}, None, turn("小广告", "illegal_ads"))
    assert step.slots["category"] == "illegal_ads"
    assert step.slots["description"] is None
    assert step.slots["pending_description"] == "小广告"
    slots = {**step.slots, "location": "新城区"}
    assert next_slot(slots) == "description"

    step = form.step(slots, "description", turn("电线杆上贴满了", "inform"))
    assert step.slots == {"description": "小广告；电线杆上贴满了", "pending_description": None}


def test_place_names_do_not_count_as_description(form: ComplaintForm) -> None:
    text = "公主府社区有狗"
    step = form.step({}, None, turn(text, "dog", 0.9, ent("community", "公主府社区", text)))
    assert step.slots["description"] is None
    assert step.slots["pending_description"] == text
    assert step.slots["community_code"] == "150102001001"


def test_description_skipped_keeps_what_was_said(form: ComplaintForm) -> None:
    slots = {**BASE, "description": None, "pending_description": "小广告"}
    step = form.step(slots, "description", turn("跳过", "inform"))
    assert step.slots == {"description": "小广告", "pending_description": None}
    step = form.step({**BASE, "description": None}, "description", turn("不", "deny"))
    assert step.slots == {"description": "（未补充描述）", "pending_description": None}


# --- photo and phone -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["跳过", "没有", "没有照片", "不方便", "算了", "skip", "没拍"])
def test_photo_skip_words(form: ComplaintForm, text: str) -> None:
    step = form.step(BASE, "photo", turn(text, "inform"))
    assert step.slots == {"photo": NO_VALUE}


def test_photo_deny(form: ComplaintForm) -> None:
    assert form.step(BASE, "photo", turn("不了吧谢谢你", "deny")).slots == {"photo": NO_VALUE}


OWN_PHOTO = "/widget/photo/" + "ab" * 16 + ".jpg"  # what our upload endpoint / WeChat media download write


def test_only_our_uploaded_photo_is_a_photo(form: ComplaintForm) -> None:
    step = form.step(BASE, "photo", turn("发了", "inform", 0.9, {"entity": "photo", "value": OWN_PHOTO}))
    assert step.slots == {"photo": OWN_PHOTO}
    full = "https://12345.huhhot.example" + OWN_PHOTO
    assert form.step(BASE, "photo", turn("发了", "inform", 0.9, {"entity": "photo", "value": full})).slots == {"photo": full}


@pytest.mark.parametrize("text, entity", [
    ("https://img.example.cn/p/1.jpg", None),
    ("www.example.cn/p/1.jpg", None),
    ("发了", "javascript:alert(1)"),
    ("发了", "/uploads/2.jpg"),
    ("发了", "https://evil.example/widget/photo/../../etc/passwd"),
])
def test_a_typed_link_or_a_foreign_photo_value_is_not_a_photo(form: ComplaintForm, text: str, entity) -> None:
    entities = [{"entity": "photo", "value": entity}] if entity else []
    step = form.step(BASE, "photo", turn(text, "inform", 0.9, *entities))
    assert step.slots == {"photo": None}
    assert step.responses == [("utter_photo_not_received", {})]


def test_photo_affirm_without_a_photo_asks_to_send_it(form: ComplaintForm) -> None:
    step = form.step(BASE, "photo", turn("好的", "affirm"))
    assert step.slots == {"photo": None}
    assert step.responses == [("utter_photo_send_now", {})]


def test_phone_given_while_asking_for_the_photo(form: ComplaintForm) -> None:
    step = form.step(BASE, "photo", turn("我电话13812345678", "inform"))
    assert step.slots == {"photo": NO_VALUE, "phone": "13812345678"}
    assert next_slot({**BASE, **step.slots}) == "confidential"


def test_more_details_while_asking_for_the_photo(form: ComplaintForm) -> None:
    step = form.step(BASE, "photo", turn("狗每天晚上都在楼道里叫个不停", "inform"))
    assert step.slots == {"photo": NO_VALUE, "description": "楼下有人遛狗不牵绳；补充：狗每天晚上都在楼道里叫个不停"}


def test_unclear_photo_answer(form: ComplaintForm) -> None:
    step = form.step(BASE, "photo", turn("嗯嗯", "inform", 0.3))
    assert step.slots == {"photo": None}
    assert step.responses == [("utter_photo_not_received", {})]


@pytest.mark.parametrize(
    ("text", "phone"),
    [("13812345678", "13812345678"), ("138 1234 5678", "13812345678"), ("+86-138-1234-5678", "13812345678"),
     ("我的电话是0471-1234567", "0471-1234567"), ("１３８１２３４５６７８", "13812345678")],
)
def test_phone_answers(form: ComplaintForm, text: str, phone: str) -> None:
    step = form.step(BASE, "phone", turn(text, "inform"))
    assert step.reject is False
    assert step.slots == {"phone": phone}


@pytest.mark.parametrize("text", ["跳过", "不留了", "不留", "不用留电话", "算了"])
def test_phone_skip_words(form: ComplaintForm, text: str) -> None:
    step = form.step(BASE, "phone", turn(text, "inform"))
    assert step.slots == {"phone": NO_VALUE, "confidential": None}


def test_phone_deny(form: ComplaintForm) -> None:
    step = form.step(BASE, "phone", turn("不", "deny"))
    assert step.slots == {"phone": NO_VALUE, "confidential": None}
    assert next_slot({**BASE, "photo": NO_VALUE, **step.slots}) == "confirm"


@pytest.mark.parametrize("text", ["12345", "1381234567", "138123456789", "电话是12812345678", "我的电话"])
def test_invalid_phone(form: ComplaintForm, text: str) -> None:
    step = form.step(BASE, "phone", turn(text, "inform"))
    assert step.slots == {"phone": None}
    assert step.responses == [("utter_phone_invalid", {})]


# --- confidential and confirm -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "intent", "expected"),
    [
        ("保密", "inform", True),
        ("帮我保密", "inform", True),
        ("匿名", "inform", True),
        ("不要公开我的信息", "inform", True),
        ("别公开", "inform", True),
        ("不要透露我的电话", "deny", True),  # the words decide, not the intent
        ("不用保密", "inform", False),
        ("不需要保密", "inform", False),
        ("不要保密", "inform", False),
        ("可以公开", "inform", False),
        ("公开也没关系", "inform", False),
        ("无所谓", "inform", False),
        ("好", "affirm", True),
        ("不", "deny", False),
        ("嗯", "inform", None),
    ],
)
def test_confidential(form: ComplaintForm, text: str, intent: str, expected) -> None:
    step = form.step({**BASE, "phone": "13812345678"}, "confidential", turn(text, intent))
    assert step.slots == {"confidential": expected}


@pytest.mark.parametrize(("text", "intent"), [("好", "affirm"), ("确认提交", "inform"), ("没问题", "inform")])
def test_confirm_yes(form: ComplaintForm, text: str, intent: str) -> None:
    assert form.step(BASE, "confirm", turn(text, intent)).slots == {"confirm": True}


def test_confirm_cancel_button_cancels(form: ComplaintForm) -> None:
    step = form.step({**BASE, "phone": "13812345678"}, "confirm", turn("/deny", "deny", from_button=True))
    assert step.slots["confirm"] is False and step.done is True and step.inbox is None
    assert step.slots["category"] == "cancelled"
    assert step.slots["location"] is None and step.slots["phone"] is None and step.slots["draft_id"] is None


def test_confirm_unclear_asks_again(form: ComplaintForm) -> None:
    step = form.step(BASE, "confirm", turn("嗯？", "inform", 0.2))
    assert step.slots == {"confirm": None}
    assert step.responses == [("utter_confirm_again", {})]


@pytest.mark.parametrize("requested", ["category", "location", "description", "photo", "phone", "confidential", "confirm"])
@pytest.mark.parametrize("text", ["不投诉了", "算了取消吧", "撤销这个"])
def test_cancel_words_at_any_step(form: ComplaintForm, requested: str, text: str) -> None:
    step = form.step(BASE, requested, turn(text, "inform", 0.6))
    assert step.reject is False
    assert step.slots["confirm"] is False
    assert step.slots["category"] == "cancelled"
    assert all(step.slots[k] is None for k in ("location", "description", "photo", "phone", "confidential",
                                               "district_code", "street_code", "community_code", "draft_id"))


# --- interruptions --------------------------------------------------------------------------


@pytest.mark.parametrize("intent", ["emergency", "ask_status", "consult"])
@pytest.mark.parametrize("requested", ["location", "description", "photo", "phone", "confirm"])
def test_interruptions_are_rejected(form: ComplaintForm, intent: str, requested: str) -> None:
    step = form.step(BASE, requested, turn("我想问一下别的事情怎么办", intent, 0.5))
    assert step.reject is True
    assert step.slots == {}


def test_low_confidence_interruption_is_an_answer(form: ComplaintForm) -> None:
    # a question is no photo and no description: the resident is told where it is answered
    step = form.step(BASE, "photo", turn("养狗要办证吗这个怎么弄", "consult", 0.49))
    assert step.reject is False
    assert step.slots == {"photo": None}
    assert step.responses == [("utter_question_later", {})]


@pytest.mark.parametrize("intent", ["emergency", "ask_status", "consult"])
def test_a_phone_number_is_never_rejected_while_asking_the_phone(form: ComplaintForm, intent: str) -> None:
    step = form.step(BASE, "phone", turn("13812345678", intent, 0.99))
    assert step.reject is False
    assert step.slots == {"phone": "13812345678"}


def test_a_phone_number_while_asking_another_slot_can_be_an_interruption(form: ComplaintForm) -> None:
    assert form.step(BASE, "photo", turn("13812345678", "ask_status", 0.9)).reject is True


@pytest.mark.parametrize("text", ["", "   ", "\u3000", "😀😀", "？？？"])
def test_unreadable_text_is_rejected(form: ComplaintForm, text: str) -> None:
    step = form.step(BASE, "photo", turn(text, "nlu_fallback", 1.0))
    assert step.reject is True


def test_a_button_is_never_rejected(form: ComplaintForm) -> None:
    step = form.step(BASE, "confirm", turn("/affirm", "affirm", 0.3, from_button=True))
    assert step.reject is False
    assert step.slots == {"confirm": True}


def test_short_chitchat_is_rejected_but_not_a_real_answer(form: ComplaintForm) -> None:
    assert form.step(BASE, "photo", turn("你好", "greet", 0.9)).reject is True
    step = form.step(BASE, "photo", turn("你好我电话13812345678", "greet", 0.9))
    assert step.reject is False
    assert step.slots["phone"] == "13812345678"


# --- summary ------------------------------------------------------------------------------------


def test_summary_variables_mask_the_phone() -> None:
    slots = {**BASE, "photo": "https://img.example.cn/a.jpg", "phone": "13812342345", "confidential": True}
    assert summary_variables(slots) == {
        "category_name": "文明养犬",
        "location": "新城区 海拉尔东路街道 公主府社区居委会",
        "description": "楼下有人遛狗不牵绳",
        "photo": "已上传",
        "phone": "138****2345",
        "confidential": "保密：是",
        "prefill_note": "",
    }


def test_summary_variables_without_phone_or_photo() -> None:
    slots = {"category": None, "location": None, "description": "x" * 200, "photo": NO_VALUE, "phone": NO_VALUE,
             "confidential": True}
    out = summary_variables(slots)
    assert out == {
        "category_name": "未分类",
        "location": "未提供",
        "description": "x" * 119 + "…",
        "photo": "无",
        "phone": "未留",
        "confidential": "",
        "prefill_note": "",
    }


# --- prefilled: the QR-code community, a photo sent before the complaint ------------
GONGZHUFU = "150102001001"  # 新城区 海拉尔东路街道 公主府社区
NOW = 1_790_000_000.0


@pytest.fixture(scope="module")
def clocked() -> ComplaintForm:
    return ComplaintForm(LocationResolver(default_gazetteer()), new_id=lambda: DRAFT, clock=lambda: NOW)


def scene_turn(text: str, intent: str = "illegal_ads", *entities, scene: str | None = GONGZHUFU) -> Turn:
    return Turn(text, intent, 0.9, list(entities), False, scene_community=scene)


def test_the_qr_code_community_fills_the_location(form: ComplaintForm) -> None:
    step = form.step({}, None, scene_turn("单元门贴满小广告"))
    assert {k: step.slots.get(k) for k in ("location_status", "district_code", "street_code", "community_code",
                                             "prefilled", "description")} == {
        "location_status": "resolved", "district_code": "150102", "street_code": "150102001",
        "community_code": GONGZHUFU, "prefilled": ["location"], "description": "单元门贴满小广告"}
    assert "公主府社区" in step.slots["location"]
    assert next_slot(step.slots) == "photo"


def test_a_place_the_resident_names_wins_over_the_qr_code(form: ComplaintForm) -> None:
    text = "赛罕区锦绣社区单元门贴满小广告"
    step = form.step({}, None, scene_turn(text, "illegal_ads", ent("district", "赛罕区", text),
                                          ent("community", "锦绣社区", text)))
    assert step.slots["community_code"] == "150105006034" and step.slots.get("prefilled") is None


@pytest.mark.parametrize("scene", [None, "", "150102001", "999999999999", "abc"])
def test_no_usable_qr_code_leaves_the_location_to_ask(form: ComplaintForm, scene) -> None:
    step = form.step({}, None, scene_turn("单元门贴满小广告", scene=scene))
    assert "location" not in step.slots and "street_code" not in step.slots and step.slots.get("prefilled") is None
    assert next_slot(step.slots) == "location"


def test_naming_another_place_at_the_confirm_step_replaces_the_qr_location(form: ComplaintForm) -> None:
    start = form.step({}, None, scene_turn("单元门贴满小广告"))
    slots = {**start.slots, "photo": NO_VALUE, "phone": NO_VALUE}
    assert next_slot(slots) == "confirm"
    assert "扫描的社区二维码" in summary_variables(slots)["prefill_note"]
    text = "不对，是赛罕区锦绣社区"
    step = form.step(slots, "confirm", turn(text, "deny", 0.8, ent("district", "赛罕区", text),
                                            ent("community", "锦绣社区", text)))
    slots.update(step.slots)
    assert (slots["community_code"], slots["street_code"], slots["confirm"], slots["prefilled"]) == \
        ("150105006034", "150105006", None, None)
    assert next_slot(slots) == "confirm" and summary_variables(slots)["prefill_note"] == ""
    # without a prefilled location a place at the confirm step changes nothing: "不对" asks what is wrong
    step = form.step({**BASE, "photo": NO_VALUE, "phone": NO_VALUE}, "confirm",
                     turn(text, "deny", 0.8, ent("community", "锦绣社区", text)))
    assert (step.slots, step.responses, step.done) == ({"confirm": None}, [("utter_confirm_what_wrong", {})], False)


def test_a_kept_photo_starts_the_next_complaint(clocked: ComplaintForm) -> None:
    kept = {"photo": "/widget/photo/abababababababababababababababab.jpg", "at": NOW - 3600}
    step = clocked.step({"kept_photo": kept}, None, turn("单元门贴满小广告", "illegal_ads"))
    assert step.slots["photo"] == "/widget/photo/abababababababababababababababab.jpg" and step.slots["prefilled"] == ["photo"]
    note = summary_variables({**step.slots, "kept_photo": kept})["prefill_note"]
    assert note == "\n（照片是您在描述问题之前发来的那张。）"
    # a photo in the complaint itself wins (one we stored, never a typed link)
    new = "/widget/photo/" + "cd" * 16 + ".png"
    photo = {"entity": "photo", "value": new}
    assert clocked.step({"kept_photo": kept}, None, turn("单元门贴满小广告", "illegal_ads", 0.9, photo)).slots["photo"] == new
    text = "单元门贴满小广告 https://img.example.cn/b.jpg"
    assert clocked.step({"kept_photo": kept}, None, turn(text, "illegal_ads")).slots["photo"] == kept["photo"]


@pytest.mark.parametrize("kept", [
    {"photo": "https://img.example.cn/b.jpg", "at": NOW},
    {"photo": "/widget/photo/abababababababababababababababab.jpg", "at": NOW - 24 * 3600 - 1},
                                  {"photo": "/widget/photo/abababababababababababababababab.jpg", "at": NOW + 60}, {"photo": "", "at": NOW},
                                  {"photo": "/widget/photo/abababababababababababababababab.jpg"}, "/widget/photo/abababababababababababababababab.jpg", None])
def test_an_expired_or_malformed_kept_photo_is_not_used(clocked: ComplaintForm, kept) -> None:
    step = clocked.step({"kept_photo": kept}, None, turn("单元门贴满小广告", "illegal_ads"))
    assert "photo" not in step.slots and step.slots.get("prefilled") is None


def test_an_ambiguous_place_at_the_confirm_step_drops_the_qr_location_and_asks(form: ComplaintForm) -> None:
    start = form.step({}, None, scene_turn("单元门贴满小广告"))
    slots = {**start.slots, "photo": NO_VALUE, "phone": NO_VALUE}
    text = "不是这个，是锦绣社区"
    step = form.step(slots, "confirm", turn(text, "inform", 0.8, ent("community", "锦绣社区", text)))
    slots.update(step.slots)
    assert (slots["location"], slots["district_code"], slots["street_code"], slots["community_code"],
            slots["location_status"]) == (None, None, None, None, "ambiguous")
    assert next_slot(slots) == "location"
    # 不清楚: what the resident said is kept, and nothing routes to the QR code's street
    step = form.step(slots, "location", turn("不清楚", "deny"))
    slots.update(step.slots)
    assert (slots["location"], slots["street_code"], slots["community_code"], slots["location_status"]) == \
        ("锦绣社区", None, None, "unresolved")


def test_a_district_answer_keeps_the_compound_the_resident_typed(form: ComplaintForm) -> None:
    # issue 13 item 7: 幸福家园小区 (not in the gazetteer) + 新城区 read as just 新城区
    place = {"entity": "place", "value": "幸福家园小区", "text": "幸福家园小区", "start": 0, "end": 6}
    start = form.step({}, None, turn("幸福家园小区门口垃圾堆了好几天没人清理", "sanitation", 0.9, place))
    assert (start.slots["location"], start.slots["location_status"]) == (None, "unresolved")
    district = {"entity": "district", "value": "新城区", "text": "新城区", "start": 0, "end": 3}
    step = form.step({**start.slots, "category": "sanitation"}, "location", turn("新城区", "inform", 0.9, district))
    assert (step.slots["location"], step.slots["location_status"], step.slots["district_code"]) == \
        ("新城区 幸福家园小区", "partial", "150102")


# --- outside test 15, P8: a zone, a name the gazetteer lacks, a place after 不知道 ---------------


def test_a_development_zone_is_known_to_its_district_and_its_street_is_asked(form: ComplaintForm) -> None:
    text = "金桥开发区"
    step = form.step({**BASE, "location": None}, "location", turn(text, "inform", 0.9, ent("place", text, text)))
    assert step.slots["location"] is None  # asked again, naming it: “金桥开发区”属于哪个街道或社区？
    assert (step.slots["location_status"], step.slots["district_code"], step.slots["location_asked"]) == (
        "partial", "150105", 1)
    assert [m["text"] for m in step.slots["location_mentions"]] == ["金桥开发区"]
    step = form.step({**BASE, **step.slots}, "location", turn("不清楚", "deny", 0.9))
    assert (step.slots["location"], step.slots["location_status"]) == ("赛罕区 金桥开发区", "partial")


def test_a_name_the_gazetteer_lacks_is_asked_about_by_name_then_kept(form: ComplaintForm) -> None:
    step = form.step({**BASE, "location": None}, "location", turn("老钢厂那片工地", "inform"))
    assert step.slots == {"location": None, "location_status": "unresolved", "location_asked": 1,
                          "location_mentions": [{"text": "老钢厂那片工地", "level": "place", "value": "老钢厂那片工地",
                                                 "start": None, "end": None}]}
    later = form.step({**BASE, **step.slots}, "location", turn("不清楚", "deny", 0.9))
    assert (later.slots["location"], later.slots["location_status"]) == ("老钢厂那片工地", "unresolved")
    later = form.step({**BASE, **step.slots}, "location", turn("靠着东二环", "inform"))
    assert later.slots["location"] == "老钢厂那片工地 靠着东二环"


@pytest.mark.parametrize("text", ["路灯坏了", "水一直在漏", "太吵了没法睡"])
def test_a_short_description_where_the_place_was_asked_is_not_asked_about_by_name(form: ComplaintForm, text: str) -> None:
    # not “路灯坏了”属于哪个街道或社区？: the same question again
    step = form.step({**BASE, "location": None}, "location", turn(text, "inform", 0.5))
    assert (step.slots["location"], step.slots["location_asked"]) == (None, 1)
    assert "location_mentions" not in step.slots


@pytest.mark.parametrize("entities", [True, False])  # the model's place entity, or none (free text)
def test_a_place_after_dont_know_is_kept(form: ComplaintForm, entities: bool) -> None:
    text = "不知道 就是毛纺厂家属院"
    ents = [ent("place", "毛纺厂家属院", text)] if entities else []
    step = form.step({**BASE, "location": None}, "location", turn(text, "inform", 0.9, *ents))
    assert (step.slots["location"], step.slots["location_status"]) == ("毛纺厂家属院", "unresolved")


@pytest.mark.parametrize("text", ["说不上是哪儿", "说不上在哪", "不记得是哪儿了"])
def test_cannot_say_where_is_an_answer_even_when_read_as_a_question(form: ComplaintForm, text: str) -> None:
    # the conversation test 其他，地点不明转派单中心 got a consult answer after round four's data
    step = form.step({**BASE, "location": None}, "location", turn(text, "consult", 0.8))
    assert not step.reject
    assert (step.slots["location"], step.slots["location_asked"]) == (None, 1)


@pytest.mark.parametrize("text", ["不知道", "不清楚啊", "不知道，说不上来"])
def test_dont_know_alone_is_still_no_place(form: ComplaintForm, text: str) -> None:
    step = form.step({**BASE, "location": None}, "location", turn(text, "deny", 0.9))
    assert step.slots["location"] == "未提供具体地点"


# --- the resident's rights asked mid-form (actions/rights.py) ------------------------------


@pytest.mark.parametrize("intent", ["my_data", "erase_my_data"])
def test_my_data_and_erasure_interrupt_the_form(form: ComplaintForm, intent: str) -> None:
    assert form.step(BASE, "photo", turn("删除我的信息", intent)).reject is True


def test_the_answer_to_the_erasure_question_is_not_an_answer_to_the_form(form: ComplaintForm) -> None:
    asked = {**BASE, "erase_asked": True}
    for answer in (turn("/affirm", "affirm", 1.0, from_button=True), turn("/deny", "deny", 1.0, from_button=True),
                   turn("好的", "affirm")):
        assert form.step(asked, "photo", answer) == FormStep(reject=True)
    # the question left unanswered: the form takes the answer, and a later yes (确认提交) cannot erase
    step = form.step(asked, "photo", turn("没有照片", "inform"))
    assert step.slots == {"photo": NO_VALUE, "erase_asked": None}
    assert form.step(BASE, "photo", turn("不了吧谢谢你", "deny")).slots == {"photo": NO_VALUE}  # not asked: as before
