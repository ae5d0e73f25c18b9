"""bot/conversation.py and bot/nlu/answers.py: typed equivalents of the buttons (issue 13 items 10–12, issue 20
item 7). The category buttons after an unsure turn, the summary's 确认/取消, the photo
question and the 回访 question, answered in the resident's own words."""

from __future__ import annotations

import pytest

from bot.conversation import (
    NO_VALUE,
    ComplaintForm,
    Turn,
    next_slot,
    summary_variables,
)
from bot.nlu.answers import CategoryMatcher, category_without_contact, followup_answer, strip_personal_details
from bot.reference.gazetteer import default_gazetteer
from bot.reference.locations import LocationResolver
from bot.reference.routing import default_catalogue

DRAFT = "draft-0002"
PENDING = "那个东西坏了好久了一直没人管"
BASE = {"category": "noise", "location": "新城区 海拉尔东路街道 公主府社区居委会", "description": "楼下饭店半夜放音乐",
        "draft_id": DRAFT, "photo": NO_VALUE, "phone": NO_VALUE}


def catalogue_matcher() -> CategoryMatcher:
    return CategoryMatcher({c: (r.name, r.keywords) for c, r in default_catalogue().categories.items()})


@pytest.fixture(scope="module")
def form() -> ComplaintForm:
    return ComplaintForm(LocationResolver(default_gazetteer()), new_id=lambda: DRAFT, categories=catalogue_matcher())


def turn(text: str, intent: str | None = "inform", confidence: float = 0.9, from_button: bool = False) -> Turn:
    return Turn(text, intent, confidence, [], from_button)


OFFERED = {"category_offered": True, "pending_description": PENDING, "location_mentions": None}


# --- 13.10: typed answers to the category buttons ---------------------------------------


@pytest.mark.parametrize("text, intent, category", [
    ("其他", "nlu_fallback", "other"),
    ("都不是", "deny", "other"),
    ("是环境污染问题", "affirm", "ecology"),  # 污染: a keyword of 生态环境 in the catalogue
    ("市政设施", "nlu_fallback", "roads_lighting"),
    ("噪声扰民", "noise", "noise"),
    ("是狗的问题", "affirm", "dog"),
])
def test_a_typed_category_answer_continues_the_complaint(form: ComplaintForm, text: str, intent: str,
                                                         category: str) -> None:
    step = form.step(OFFERED, None, turn(text, intent))
    assert step.slots["category"] == category
    assert step.slots["description"] == PENDING  # the message the buttons were offered for
    assert step.slots["category_offered"] is None and step.slots["pending_description"] is None
    assert step.inbox == {"choice": category, "text": PENDING}
    assert step.done is False and next_slot(step.slots) == "location"


def test_a_typed_answer_naming_no_category_is_more_of_the_complaint_under_other(form: ComplaintForm) -> None:
    step = form.step(OFFERED, None, turn("就在我家楼下每天晚上都这样", "nlu_fallback", 0.2))
    # no category question after the buttons (it looped): 其他, and the resident is told
    assert step.slots["category"] == "other" and step.responses == [("utter_category_other", {})]
    assert step.slots["description"] == PENDING + "；就在我家楼下每天晚上都这样"
    assert step.inbox is None and next_slot(step.slots) == "location"


@pytest.mark.parametrize("text, intent", [("不知道", "deny"), ("不知道啊", "out_of_scope"), ("你看着办", "nlu_fallback"),
                                          ("跳过", "deny"), ("确认提交", "affirm")])
def test_an_unclear_answer_to_the_buttons_files_under_other(form: ComplaintForm, text: str, intent: str) -> None:
    step = form.step(OFFERED, None, turn(text, intent))
    assert step.slots["category"] == "other" and step.responses == [("utter_category_other", {})]
    assert step.slots["description"] == PENDING  # "不知道" is no part of the complaint
    assert step.done is False and next_slot(step.slots) == "location"


@pytest.mark.parametrize("text, intent", [("不知道", "deny"), ("不知道啊", "out_of_scope"), ("你看着办", "greet")])
def test_an_unclear_answer_to_the_category_question_is_other_not_a_loop(form: ComplaintForm, text: str,
                                                                       intent: str) -> None:
    step = form.step({"description": PENDING}, "category", turn(text, intent, 0.95))
    assert step.reject is False
    assert step.slots == {"category": "other"} and step.responses == [("utter_category_other", {})]


@pytest.mark.parametrize("text, ranking, category", [
    ("公主府社区下水井盖缺失，联系方式：13847112345", [{"name": "inform", "confidence": 0.7},
                                                  {"name": "roads_lighting", "confidence": 0.2},
                                                  {"name": "drainage", "confidence": 0.09}], "roads_lighting"),
    ("公主府社区下水井盖缺失，联系方式：13847112345", [{"name": "inform", "confidence": 0.7},
                                                  {"name": "drainage", "confidence": 0.2},
                                                  {"name": "roads_lighting", "confidence": 0.09}], "drainage"),
    ("门口的路灯坏了好几天，联系电话 13847112345。", [{"name": "inform", "confidence": 0.9}], "roads_lighting"),
    ("有个事情想说一下，电话13847112345", [{"name": "inform", "confidence": 0.9},
                                        {"name": "noise", "confidence": 0.1}], "noise"),
])
def test_a_complaint_is_read_without_its_contact_clause(text: str, ranking: list, category: str) -> None:
    assert category_without_contact(text, ranking, catalogue_matcher()) == category


@pytest.mark.parametrize("text, ranking", [
    ("公主府社区下水井盖缺失", [{"name": "roads_lighting", "confidence": 0.2}]),  # no contact clause: the model decides
    ("联系方式：13847112345", [{"name": "noise", "confidence": 0.2}]),  # nothing but the contact
    ("我在公主府社区，电话13847112345", [{"name": "inform", "confidence": 0.9}]),  # no category anywhere
])
def test_no_category_is_made_up_from_a_contact_clause(text: str, ranking: list) -> None:
    assert category_without_contact(text, ranking, catalogue_matcher()) is None


@pytest.mark.parametrize("text", ["不对，是化工厂排废气污染，不是噪音", "不是噪音，是油烟", "类别不对，是大气污染",
                                  "是化工厂排废气污染"])
def test_a_correction_to_ecology_is_read_from_the_corrected_clause(text: str) -> None:
    assert catalogue_matcher().choose(text, "deny", exclude=["noise"]) == "ecology"


def test_a_phone_typed_after_the_buttons_is_the_contact_not_the_description(form: ComplaintForm) -> None:
    step = form.step(OFFERED, None, turn("我电话13912345678，就在我家楼下", "nlu_fallback", 0.2))
    assert step.slots["phone"] == "13912345678"
    assert step.slots["description"] == PENDING + "；就在我家楼下"


def test_a_cancel_typed_instead_of_a_button_cancels(form: ComplaintForm) -> None:
    step = form.step(OFFERED, None, turn("取消", "deny"))
    assert step.done is True and step.slots["confirm"] is False and step.slots["category_offered"] is None


def test_without_buttons_out_the_first_message_is_the_complaint(form: ComplaintForm) -> None:
    step = form.step({"pending_description": PENDING}, None, turn("楼下有人遛狗不牵绳", "dog"))
    assert (step.slots["category"], step.slots["description"], step.inbox) == ("dog", "楼下有人遛狗不牵绳", None)


def test_the_category_question_takes_typed_names(form: ComplaintForm) -> None:
    assert form.step({"description": PENDING}, "category", turn("其他", "nlu_fallback")).slots == {"category": "other"}
    assert form.step({"description": PENDING}, "category", turn("下水道的问题", "affirm")).slots == {"category": "drainage"}


def test_new_catalogue_codes_are_understood_without_code_changes() -> None:
    """Branch nlu adds codes to data/routing/catalogue.yml: names and keywords are all it takes."""
    names = {c: (r.name, r.keywords) for c, r in default_catalogue().categories.items()}
    names["ecology"] = ("生态环境", ("油烟", "废气", "异味", "偷排", "扬尘", "化工厂", "污染", "黑烟"))
    names["power_supply"] = ("供电", ("停电", "电压", "电表"))
    m = CategoryMatcher(names)
    assert m.choose("是环境污染问题", "affirm") == "ecology"
    assert m.choose("不对，是化工厂排废气污染，不是噪音", "deny", exclude=["noise"]) == "ecology"
    assert m.choose("供电", "nlu_fallback") == "power_supply"
    assert m.choose("是停电的问题", "affirm") == "power_supply"


# --- the summary: 确认 / 取消 / a correction (13.10, 20.7) ---------------------------------


@pytest.mark.parametrize("text, intent", [("取消", "deny"), ("取消吧", "deny"), ("算了不提交了", "deny"),
                                          ("不用了", "deny")])
def test_a_typed_cancel_at_the_summary_is_a_cancel(form: ComplaintForm, text: str, intent: str) -> None:
    step = form.step(BASE, "confirm", turn(text, intent))
    assert step.done is True and step.slots["confirm"] is False and step.inbox is None


@pytest.mark.parametrize("text, intent", [("确认", "affirm"), ("确认提交", "affirm"), ("对的没问题", "affirm"),
                                          ("提交吧", "inform"), ("是的", "affirm")])
def test_typed_confirmations(form: ComplaintForm, text: str, intent: str) -> None:
    step = form.step(BASE, "confirm", turn(text, intent))
    assert step.slots == {"confirm": True} and step.inbox is None


def test_a_correction_at_the_summary_changes_the_category_and_goes_on(form: ComplaintForm) -> None:
    step = form.step(BASE, "confirm", turn("不对，是下水道堵了返臭味，不是噪音", "deny"))
    assert step.slots == {"category": "drainage", "confirm": None}
    assert step.done is False and step.responses == []
    assert step.inbox == {"denied": "noise", "intent": "drainage", "text": "楼下饭店半夜放音乐"}
    assert next_slot({**BASE, **step.slots}) == "confirm"  # the summary again, with the new category
    assert summary_variables({**BASE, **step.slots})["category_name"] == "排水与污水"


def test_a_plain_no_at_the_summary_asks_what_is_wrong(form: ComplaintForm) -> None:
    step = form.step(BASE, "confirm", turn("不对", "deny"))
    assert (step.slots, step.responses, step.done, step.inbox) == (
        {"confirm": None}, [("utter_confirm_what_wrong", {})], False, None)


def test_the_buttons_still_mean_what_they_say(form: ComplaintForm) -> None:
    assert form.step(BASE, "confirm", turn("/affirm", "affirm", from_button=True)).slots == {"confirm": True}
    assert form.step(BASE, "confirm", turn("/deny", "deny", from_button=True)).done is True


# --- 13.11: personal details in the complaint ----------------------------------------------


COMPLAINT_WITH_DETAILS = "楼上漏水到我家，我叫王小明，电话13912345678，身份证150102199001011234"


def test_personal_details_are_taken_out_of_the_description(form: ComplaintForm) -> None:
    step = form.step({}, None, turn(COMPLAINT_WITH_DETAILS, "property"))
    assert step.slots["category"] == "property"
    assert step.slots["description"] == "楼上漏水到我家"
    assert step.slots["phone"] == "13912345678"
    assert summary_variables({**step.slots, "location": "x"})["phone"] == "139****5678"


@pytest.mark.parametrize("text, kept", [
    ("我是王小明，电话：139 1234 5678，小区门口垃圾没人清", "小区门口垃圾没人清"),
    ("暖气不热 本人李建国 手机号15247154321", "暖气不热"),
    ("我是这个小区的业主，垃圾三天没人清了", "我是这个小区的业主，垃圾三天没人清了"),
    ("墙上喷的办证电话 一大片", "墙上喷的办证电话 一大片"),
    ("楼下吵 电话13912345678 快来", "楼下吵 快来"),
    ("我是业主，楼下吵", "我是业主，楼下吵"),
    ("暖气不热'; DROP TABLE tickets; --", "暖气不热'; DROP TABLE tickets; --"),  # no details: exactly as typed
])
def test_strip_personal_details(text: str, kept: str) -> None:
    assert strip_personal_details(text) == kept


def test_the_summary_masks_numbers_left_in_the_description() -> None:
    shown = summary_variables({**BASE, "description": "到处贴小广告 上面电话是13327418890"})["description"]
    assert "13327418890" not in shown and "133****8890" in shown


# --- 13.12: answers to the photo question ----------------------------------------------


@pytest.mark.parametrize("text, intent", [("没有", "deny"), ("不方便", "inform"), ("拍不了", "nlu_fallback"),
                                          ("拍不到，是声音", "nlu_fallback"), ("没法拍 晚上太黑了", "nlu_fallback")])
def test_no_photo_in_any_words_is_no_photo_and_no_description(form: ComplaintForm, text: str, intent: str) -> None:
    step = form.step(BASE, "photo", turn(text, intent))
    assert step.slots == {"photo": NO_VALUE} and step.responses == []


def test_a_photo_question_is_answered_and_not_appended(form: ComplaintForm) -> None:
    step = form.step(BASE, "photo", turn("噪音怎么拍照片，没有", "nlu_fallback", 0.2))
    assert step.slots == {"photo": NO_VALUE}  # 没有: answered, and the form moves on
    assert step.responses == [("utter_photo_help", {})]


def test_a_photo_question_classified_as_consult_is_still_the_forms(form: ComplaintForm) -> None:
    step = form.step(BASE, "photo", turn("怎么拍照片", "consult", 0.8))
    assert step.reject is False
    assert step.slots == {"photo": None} and step.responses == [("utter_photo_help", {})]


def test_a_real_detail_at_the_photo_question_is_still_kept(form: ComplaintForm) -> None:
    step = form.step(BASE, "photo", turn("每天晚上十一点以后才开始放", "inform", 0.6))
    assert step.slots == {"photo": NO_VALUE, "description": "楼下饭店半夜放音乐；补充：每天晚上十一点以后才开始放"}


# --- 13.10: the 回访 question ---------------------------------------------------------


@pytest.mark.parametrize("text, intent, answer", [
    ("满意，谢谢你们", "praise", (True, "满意")),
    ("满意", "followup_satisfied", (True, "满意")),
    ("很满意，辛苦了", "praise", (True, "满意")),
    ("基本满意", "followup_basic", (True, "基本满意")),
    ("还行吧", "affirm", (True, "基本满意")),
    ("不满意", "followup_unsatisfied", (True, "不满意")),
    ("解决是解决了 但是不满意", "followup_unsatisfied", (True, "不满意")),
    ("没解决", "followup_unsolved", (False, None)),
    ("还是没修好", "nlu_fallback", (False, None)),
    ("问题还在，没人来处理", "inform", (False, None)),
    ("解决了", "affirm", (True, None)),
    ("谢谢", "praise", None),
    ("嗯", "affirm", None),
])
def test_followup_answers_in_words(text: str, intent: str, answer) -> None:
    assert followup_answer(text, intent) == answer


def test_followup_buttons() -> None:
    assert followup_answer("/followup_basic", "followup_basic", from_button=True) == (True, "基本满意")
    assert followup_answer("/followup_unsolved", "followup_unsolved", from_button=True) == (False, None)
