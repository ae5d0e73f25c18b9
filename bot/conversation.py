"""What the complaint form does with each resident turn: pure logic, no Rasa imports.

`form_step` takes the form's slots, the slot being asked and the parsed turn, and says
which slots change, what to tell the resident (response keys + variables), or that the
turn is not an answer at all (`reject`: the rules handle it, then the form resumes).
"""
from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.domain.handoff import SUMMARY_REFUSED
from bot.domain.model import CATEGORIES
from bot.nlu.answers import MIN_DESCRIPTION_CHARS, CategoryMatcher, meaningful_chars, strip_personal_details
from bot.reference.locations import (
    AMBIGUOUS,
    CONFLICT,
    RESOLVED,
    LocationResolver,
    Mention,
    Resolution,
    building_text,
)
from bot.text import find_phone, input_issue, valid_phone
from bot.uploads import own_photo_name

FORM_SLOTS = ("category", "location", "description", "photo", "phone", "confidential", "confirm")
LOCATION_SLOTS = (
    "location_status", "location_candidates", "location_mentions", "location_asked",
    "district_code", "street_code", "community_code",
)
# category_offered: the category buttons of action_clarify are out for pending_description
# (a featurised slot: data/rules/complaint.yml starts the form on a typed answer to them)
AUX_SLOTS = LOCATION_SLOTS + ("draft_id", "pending_description", "prefilled", "category_offered")
NO_VALUE = "none"  # a skipped optional answer (photo, phone): asked, declined
# Not a slot: how many times the resident already said no to the summary in this form run
# (the action counts them in the tracker, actions/complaint.summary_refusals). The second no
# hands the conversation to a person (FormStep.handoff).
REFUSALS = "summary_refusals"
# The category slot of a form ended by a hand-off: the answers went to the agent, nothing is filed.
HANDED_OVER = "handed_over"
# A photo sent before any complaint: kept with the conversation (slot kept_photo, one per
# resident, {"photo": ref, "at": epoch seconds}) for this long, then the next complaint
# starts with it; filing a ticket uses it up.
KEPT_PHOTO_SLOT = "kept_photo"
KEPT_PHOTO_SECONDS = 24 * 3600

# 删除我的信息 asked to confirm (actions/rights.py): its yes/no is not an answer to the form
ERASE_ASKED_SLOT = "erase_asked"

INTERRUPTIONS = {"emergency", "ask_status", "consult", "human_handoff", "my_data", "erase_my_data"}
CHITCHAT = {"greet", "goodbye", "praise", "out_of_scope"}
MAX_CHOICES = 8

_CANCEL = re.compile(r"取消|撤销|撤回|不投诉了|不反映了|不举报了|不报了|不提交|不用提交|不弄了")
_SKIP = re.compile(r"^\s*(跳过|没有|没|无|不用|不需要|不要|不留|算了|不了|不方便|pass|skip|no)\W*$|不留|"
    r"不用留|没照片|没有照片|不拍|没拍|不清楚|不知道|不确定", re.I)
_LINK = re.compile(r"(?:https?://|www\.)\S+", re.I)  # a pasted link: never a photo (only uploads are)
# text that looked like a payload and was refused by the channel (its "/" made full-width,
# bot/channels/payloads.py): noise, never part of what the resident described
_REFUSED_PAYLOAD = re.compile(r"^\s*[／/]\s*\w+\s*(?:\{.*\})?\s*$", re.S)
_CONFIDENTIAL_YES = re.compile(r"(?<!不)(?<!不用)(?<!不需要)(?<!不要)保密|匿名|别透露|不要透露|不公开|不要公开|别公开")
# 公开 alone means "may be disclosed", but not in 不公开/不要公开/别公开 (which ask for 保密)
_CONFIDENTIAL_NO = re.compile(r"不用保密|不需要保密|不要保密|不保密|无所谓|(?<!不)(?<!不要)(?<!别)公开")
# "no photo" in the words residents use (anywhere in a short answer, not only alone)
_PHOTO_DECLINE = re.compile(r"拍不了|拍不到|拍不着|没法拍|没办法拍|无法拍|不好拍|不会拍|拍不出|没拍|不拍|没有照片|没照片|"
                            r"没有图|没图|不方便|没有|没带手机|发不了|传不了")
_QUESTION = re.compile(r"怎么|怎样|如何|咋|能不能|可不可以|可以吗|行吗|要不要|需不需要|为什么|为啥|哪里|多久|什么时候|[？?]|吗\W*$")
_PHOTO_WORDS = re.compile(r"拍|照|图|录|视频|相册|截屏")
# at the summary: a typed deny that gives the complaint up (not "不对": that asks what is wrong)
_GIVE_UP = re.compile(r"算了|不用了|不要了|不需要了|放弃|不想(提交|反映|投诉)")
# "不对"/"错了"/"改成…": the resident corrects something at the summary
_CORRECTION_CUE = re.compile(r"不对|不是|错了|搞错|改成|改为|应该是|而是|其实是|换成")
# "不知道", "你看着办": the resident cannot say which category
_NO_IDEA = re.compile(r"不知道|不清楚|不晓得|不确定|说不清|看着办|随便|你们定|你定|都行|都可以|跳过|确认|提交")


@dataclass
class Turn:
    """The resident's latest message as the NLU understood it."""

    text: str
    intent: str | None = None
    confidence: float = 0.0
    entities: Sequence[Mapping[str, Any]] = ()
    from_button: bool = False
    # the community of the QR code the resident followed the WeChat account through
    # (channel metadata): the location of a complaint that names no place
    scene_community: str | None = None

    def entity(self, name: str) -> str | None:
        for e in self.entities:
            if e.get("entity") == name and e.get("value") not in (None, ""):
                return str(e["value"])
        return None


@dataclass
class FormStep:
    slots: dict[str, Any] = field(default_factory=dict)
    responses: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    reject: bool = False
    done: bool = False  # end the form now (cancelled), whatever is still missing
    # for the review inbox (the action writes it): {"choice": code, "text": …} the category the
    # resident picked after an unsure turn; {"denied": old, "intent": new, "text": …} a correction
    inbox: dict[str, Any] | None = None
    # a hand-off reason (bot/domain/handoff.py): the action fetches a person with the form's answers
    handoff: str | None = None

    def say(self, key: str, **variables: Any) -> FormStep:
        self.responses.append((key, variables))
        return self


def own_photo(turn: Turn) -> str | None:
    """The photo of this turn: only one our upload endpoint or WeChat's media download
    stored (a link typed in the text, or any other URL, is not a photo: 照片：已上传 would lie)."""
    ref = turn.entity("photo")
    return ref.strip() if own_photo_name(ref) else None


def required_slots(slots: Mapping[str, Any]) -> list[str]:
    """What the form needs, in order: 保密 only matters once a phone was given."""
    need = ["category", "location", "description", "photo", "phone"]
    phone = slots.get("phone")
    if phone and phone != NO_VALUE:
        need.append("confidential")
    need.append("confirm")
    return need


def next_slot(slots: Mapping[str, Any]) -> str | None:
    for name in required_slots(slots):
        if slots.get(name) is None:
            return name
    return None


class ComplaintForm:
    def __init__(self, resolver: LocationResolver, new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
                 clock: Callable[[], float] = time.time, categories: CategoryMatcher | None = None):
        self.resolver = resolver
        self.categories = categories or CategoryMatcher.from_names(CATEGORIES)
        self.new_id = new_id
        self.clock = clock

    # --- entry ---------------------------------------------------------
    def step(self, slots: Mapping[str, Any], requested: str | None, turn: Turn) -> FormStep:
        if slots.get(ERASE_ASKED_SLOT) and requested is not None and turn.intent in ("affirm", "deny"):
            return FormStep(reject=True)  # 确认删除 / 不删除: the rules give it to action_erase_my_data
        step = self._step(slots, requested, turn)
        if slots.get(ERASE_ASKED_SLOT) and not step.reject:
            # the erasure question went unanswered: a later yes (确认提交) must not erase
            step.slots[ERASE_ASKED_SLOT] = None
        return step

    def _step(self, slots: Mapping[str, Any], requested: str | None, turn: Turn) -> FormStep:
        if requested is None:
            return self.start(slots, turn)
        if self._is_interruption(requested, turn):
            return FormStep(reject=True)
        if requested != "confirm" and _CANCEL.search(turn.text or ""):
            return self.cancel()
        handler = getattr(self, f"answer_{requested}", None)
        if handler is None:
            return FormStep(slots={requested: None})
        return handler(dict(slots), turn)

    def _is_interruption(self, requested: str, turn: Turn) -> bool:
        if turn.from_button:
            return False
        if input_issue(turn.text) is not None:
            return True  # nothing to read: the rules say so, then the form asks again
        if turn.intent in INTERRUPTIONS and turn.confidence >= 0.5:
            # a phone number or a place is still an answer, whatever the classifier says
            if requested == "phone" and find_phone(turn.text):
                return False
            # "噪音怎么拍照片": a question about the photo asked for is answered by the form
            if requested == "photo" and _PHOTO_WORDS.search(turn.text or ""):
                return False
            # "说不上是哪儿" to the place question is an answer (read as consult: 哪儿)
            if requested == "location" and _NO_PLACE.search(turn.text or "") and meaningful_chars(turn.text) <= 8:
                return False
            return not (requested == "location" and self._mentions(turn))
        if turn.intent in CHITCHAT and turn.confidence >= 0.7 and meaningful_chars(turn.text) <= 6:
            return requested != "category"  # "不知道啊" to the category question is an answer (其他)
        return False

    def handed_over(self) -> FormStep:
        """End the form without filing: its answers are with the agent (the hand-off's
        kept form), who can file them (代登记); the held phone stays for them (its retention)."""
        return FormStep(slots={"confirm": False, "category": HANDED_OVER}, done=True)

    def cancel(self) -> FormStep:
        step = FormStep(slots={name: None for name in FORM_SLOTS + AUX_SLOTS}, done=True)
        step.slots["confirm"] = False  # ends the form; the submit action says it was cancelled
        step.slots["category"] = "cancelled"
        return step

    # --- activation: take everything the first message already says ----------
    def start(self, slots: Mapping[str, Any], turn: Turn) -> FormStep:
        if self._answers_buttons(slots, turn) and _CANCEL.search(turn.text or ""):
            return self.cancel()
        step = FormStep(slots={"draft_id": self.new_id(), "confirm": None, "category_offered": None})
        category = turn.intent if turn.intent in CATEGORIES else slots.get("category")
        as_button = turn.from_button
        extra = ""
        if self._answers_buttons(slots, turn):
            # typed instead of a category button ("其他", "都不是", "是环境污染问题"): the same as
            # the button; anything else typed there is more of the same complaint
            chosen = self.categories.choose(turn.text, turn.intent)
            as_button = True
            category = chosen
            if chosen is not None:
                step.inbox = {"choice": chosen, "text": slots.get("pending_description")}
            else:
                # "不知道", "你看着办", "确认提交": asking again would loop; the dispatch centre decides
                category = "other"
                step.say("utter_category_other")
                if (turn.intent not in ("affirm", "deny") and not _SKIP.search(turn.text or "")
                        and not _NO_IDEA.search(turn.text or "")):
                    extra = (turn.text or "").strip()
        step.slots["category"] = category
        if as_button:
            text = "；".join(t for t in (slots.get("pending_description") or "", extra) if t)
        else:
            text = turn.text or ""
        phone_source = text  # the phone is taken below, from the text as typed
        text = strip_personal_details(text)
        step.slots["pending_description"] = None
        if as_button:  # the places of the text the buttons were offered for
            mentions = [Mention(**m) for m in (slots.get("location_mentions") or [])]
            if not turn.from_button:
                mentions += self._mentions(turn)
        else:
            mentions = self._mentions(turn)
        prefilled: list[str] = []
        if mentions:
            self._take_location(step, slots, mentions, turn.text or "", first=True)
        elif self._take_scene(step, slots, turn.scene_community):
            prefilled.append("location")
        mention_texts = [m.text for m in mentions]
        if meaningful_chars(text, mention_texts) >= MIN_DESCRIPTION_CHARS:
            step.slots["description"] = text
        else:
            step.slots["description"] = None
            step.slots["pending_description"] = text or None
        phone = find_phone(phone_source)
        if phone and valid_phone(phone):
            step.slots["phone"] = phone
        url = own_photo(turn)
        if url:
            step.slots["photo"] = url
        elif self.kept_photo(slots):
            step.slots["photo"] = self.kept_photo(slots)
            prefilled.append("photo")
        if prefilled:
            step.slots["prefilled"] = prefilled
        return step

    @staticmethod
    def _answers_buttons(slots: Mapping[str, Any], turn: Turn) -> bool:
        """A typed turn right after the category buttons (action_clarify) were offered."""
        return bool(slots.get("category_offered")) and bool(slots.get("pending_description")) and not turn.from_button

    def kept_photo(self, slots: Mapping[str, Any]) -> str | None:
        """The photo the resident sent before this complaint, unless it expired."""
        kept = slots.get(KEPT_PHOTO_SLOT)
        if not isinstance(kept, Mapping) or not own_photo_name(kept.get("photo")):
            return None
        try:
            age = self.clock() - float(kept.get("at"))
        except (TypeError, ValueError):
            return None
        return str(kept["photo"]) if 0 <= age <= KEPT_PHOTO_SECONDS else None

    def _take_scene(self, step: FormStep, slots: Mapping[str, Any], code: str | None) -> bool:
        """The QR-code community as the location (only when it resolves to a street)."""
        place = self.resolver.g.get(code) if code else None
        if place is None or place.level != "community":
            return False
        self._take_location(step, slots, [Mention(place.name, "community", place.code)], "", first=True)
        if step.slots.get("location_status") == RESOLVED and step.slots.get("street_code"):
            return True
        for name in LOCATION_SLOTS + ("location",):
            step.slots.pop(name, None)
        return False

    # --- answers ---------------------------------------------------------
    def answer_category(self, slots: dict[str, Any], turn: Turn) -> FormStep:
        if turn.from_button and turn.intent in CATEGORIES:
            return FormStep(slots={"category": turn.intent})
        chosen = None if turn.from_button else self.categories.choose(turn.text, turn.intent)
        if chosen is None:  # one unclear answer: never ask again (it loops); the dispatch centre decides
            return FormStep(slots={"category": "other"}).say("utter_category_other")
        return FormStep(slots={"category": chosen})

    def answer_location(self, slots: dict[str, Any], turn: Turn) -> FormStep:
        step = FormStep()
        mentions = self._mentions(turn)
        text = turn.text or ""
        asked = int(slots.get("location_asked") or 0)
        if mentions and slots.get("location_status") == CONFLICT:
            chosen = self.resolver.resolve(mentions)
            if chosen.status == RESOLVED and chosen.street_code:
                return self._settle_conflict(slots, step, chosen, text)
        unsure = _SKIP.search(text) is not None
        if mentions:
            previous = [Mention(**m) for m in (slots.get("location_mentions") or [])]
            # the new answer alone first (a button's code, a fuller name), then with
            # what was said before (新城区 + 锦绣社区 across two turns)
            alone = self.resolver.resolve(mentions)
            together = mentions if alone.status == RESOLVED and alone.street_code else previous + mentions
            # "不知道 就是毛纺厂家属院": the place as said; asking its street again would loop
            self._take_location(step, {**slots, "location_asked": max(asked, 1)} if unsure else slots,
                                together, text, first=False)
            return step
        # a complaint typed where the place was asked is not a place name
        described = (turn.intent in CATEGORIES and turn.confidence >= 0.7) or turn.intent == "affirm"
        said = _said_place(text) if not (turn.from_button or described) else ""
        if turn.intent == "deny" or unsure:
            # 不清楚: keep what we have, however imprecise; the dispatch centre routes it
            step = self._accept_partial(slots, step)
            if said and said not in step.slots["location"]:  # 不清楚，反正在老城那边: keep what follows
                kept = step.slots["location"] if slots.get("location_mentions") else ""
                step.slots["location"] = " ".join(x for x in (kept, said) if x)
            return step
        if asked == 0 and said and slots.get("location_status") != CONFLICT:
            # a name the gazetteer lacks (a zone, a landmark): say so by asking for its street,
            # with the name, instead of the same question again; the next answer is kept
            step.slots.update(location=None, location_status="unresolved", location_asked=1,
                              location_mentions=[Mention(said, "place", said).__dict__])
            return step
        if slots.get("location_status") == CONFLICT and asked < 3:
            step.slots.update(location=None, location_asked=asked + 1)  # which of the two streets: ask again
            return step
        if asked >= 1 and meaningful_chars(text) >= 2:
            # a second free-text answer is kept as typed (a compound the gazetteer lacks),
            # after the name the first answer gave
            before = [m["text"] for m in (slots.get("location_mentions") or []) if m.get("text") not in text]
            step.slots.update(location=" ".join([*before, text.strip()]), location_status="unresolved",
                              location_asked=asked + 1)
            return step
        step.slots.update(location=None, location_asked=asked + 1)
        return step

    def _accept_partial(self, slots: dict[str, Any], step: FormStep) -> FormStep:
        previous = [Mention(**m) for m in (slots.get("location_mentions") or [])]
        label = " ".join(m.text for m in previous) or "未提供具体地点"
        if slots.get("location_status") == "partial":  # 金桥开发区 → 赛罕区 金桥开发区: the district it is in
            res = self.resolver.resolve([m for m in previous if m.level != "building"])
            if res.status == RESOLVED:
                label = " ".join([self.resolver.label(res), *(m.text for m in previous
                                                               if m.text not in self.resolver.label(res))])
        step.slots.update(location=label, location_status=slots.get("location_status") or "unresolved",
                          location_candidates=None)
        if slots.get("location_status") in (AMBIGUOUS, CONFLICT):
            step.slots["location_status"] = "unresolved"
        return step

    def _settle_conflict(self, slots: dict[str, Any], step: FormStep, chosen: Resolution, text: str) -> FormStep:
        """The resident chose a street after we asked (button or typed). The compound
        decides the community only when it lies in that street; otherwise the chosen
        street routes the ticket and the compound's name stays in the location text."""
        previous = [Mention(**m) for m in (slots.get("location_mentions") or [])]
        compounds = [m for m in previous if m.level in ("community", "place")]
        buildings = [m for m in previous if m.level == "building"]
        for m in compounds:
            own = self.resolver.resolve([m])
            if own.status == RESOLVED and own.street_code == chosen.street_code:
                self._take_location(step, {**slots, "location_asked": 0}, [m, *buildings], text, first=False)
                return step
        label = " ".join([self.resolver.label(chosen), *(m.text for m in compounds), *(m.text for m in buildings)])
        step.slots.update(location=label, location_status=RESOLVED, location_candidates=None,
                          district_code=chosen.district_code, street_code=chosen.street_code,
                          community_code=chosen.community_code)
        return step

    def _take_location(self, step: FormStep, slots: Mapping[str, Any], mentions: list[Mention], text: str,
                       first: bool) -> None:
        res = self.resolver.resolve(mentions)
        building = building_text(text)
        stored = [m.__dict__ for m in mentions if m.level != "building"]
        if building:  # kept with the names, so an imprecise answer still carries it
            stored.append(Mention(building, "building", building).__dict__)
        elif any(m.level == "building" for m in mentions):
            building = next(m.text for m in mentions if m.level == "building")
            stored.append(Mention(building, "building", building).__dict__)
        asked = int(slots.get("location_asked") or 0)
        step.slots["location_mentions"] = stored
        if res.status == RESOLVED and res.street_code:
            label = self.resolver.label(res) + (f" {building}" if building else "")
            place_names = [m.text for m in mentions if m.level == "place"]
            if place_names and res.place is not None and res.place.level != "place":
                label += " " + " ".join(place_names)
            step.slots.update(location=label, location_status=RESOLVED, location_candidates=None,
                              district_code=res.district_code, street_code=res.street_code,
                              community_code=res.community_code)
            return
        if res.status == CONFLICT:
            # [the street the resident named, the compound]: action_ask_location offers both streets
            step.slots.update(location=None, location_status=CONFLICT, district_code=None, street_code=None,
                              community_code=None, location_candidates=[c.code for c in res.candidates],
                              location_asked=asked + 1)
            return
        if res.status == AMBIGUOUS:
            step.slots.update(location=None, location_status=AMBIGUOUS,
                              location_candidates=[c.code for c in res.candidates[:MAX_CHOICES]],
                              location_asked=asked + 1)
            return
        # district only, a mapped place without a street, or an unknown compound/road:
        # ask once for the street or community, then accept what we have.
        partial = res.status == RESOLVED
        step.slots.update(district_code=res.district_code if partial else None, street_code=None,
                          community_code=None, location_candidates=None,
                          location_status="partial" if partial else "unresolved")
        names = " ".join(m.text for m in mentions if m.level != "building")
        label = (self.resolver.label(res) if partial else names) or text.strip()
        if partial:  # the district alone would drop the compound (小区) the resident typed
            label = " ".join([label, *(m.text for m in mentions if m.level == "place" and m.text not in label)])
        if building:
            label += f" {building}"
        if asked >= 1 and not first:
            step.slots["location"] = label
        else:
            step.slots.update(location=None, location_asked=asked + 1)

    def _mentions(self, turn: Turn) -> list[Mention]:
        out = []
        for e in turn.entities:
            if e.get("entity") not in ("district", "street", "community", "place"):
                continue
            m = Mention.from_entity(e)
            if m is not None:
                out.append(m)
        return out

    def answer_description(self, slots: dict[str, Any], turn: Turn) -> FormStep:
        text = (turn.text or "").strip()
        pending = slots.get("pending_description") or ""
        if turn.intent == "deny" or _SKIP.search(text) or turn.from_button:
            return FormStep(slots={"description": pending or "（未补充描述）", "pending_description": None})
        if _REFUSED_PAYLOAD.match(text):  # a refused /intent{…}: ask again
            return FormStep(slots={"description": None})
        combined = f"{pending}；{text}" if pending else text
        return FormStep(slots={"description": combined, "pending_description": None})

    def answer_photo(self, slots: dict[str, Any], turn: Turn) -> FormStep:
        url = own_photo(turn)
        text = turn.text or ""
        if url:
            return FormStep(slots={"photo": url})
        declined = turn.intent == "deny" or bool(_SKIP.search(text) or _PHOTO_DECLINE.search(text))
        if _QUESTION.search(text) and not turn.from_button:
            # "噪音怎么拍照片，没有": answer it (or say where it is answered); never part of the description
            step = FormStep(slots={"photo": NO_VALUE if declined else None})
            return step.say("utter_photo_help" if _PHOTO_WORDS.search(text) else "utter_question_later")
        if declined:
            return FormStep(slots={"photo": NO_VALUE})
        if turn.intent == "affirm":
            return FormStep(slots={"photo": None}).say("utter_photo_send_now")
        if _REFUSED_PAYLOAD.match(text) or (_LINK.search(text) and meaningful_chars(_LINK.sub("", text)) < 6):
            # a pasted link is not a photo we have: ask for the picture itself
            return FormStep(slots={"photo": None}).say("utter_photo_not_received")
        # The resident moved on: a phone number or more details instead of a photo.
        step = FormStep(slots={"photo": NO_VALUE})
        phone = find_phone(text)
        if phone and valid_phone(phone):
            step.slots["phone"] = phone
        elif meaningful_chars(text) >= 6 and not _PHOTO_WORDS.search(text):
            detail = strip_personal_details(text.strip())
            step.slots["description"] = f"{slots.get('description') or ''}；补充：{detail}".lstrip("；")
        else:
            step.slots["photo"] = None
            step.say("utter_photo_not_received")
        return step

    def answer_phone(self, slots: dict[str, Any], turn: Turn) -> FormStep:
        text = turn.text or ""
        phone = find_phone(text)
        if phone and valid_phone(phone):
            return FormStep(slots={"phone": phone})
        if turn.intent == "deny" or _SKIP.search(text):
            return FormStep(slots={"phone": NO_VALUE, "confidential": None})
        return FormStep(slots={"phone": None}).say("utter_phone_invalid")

    def answer_confidential(self, slots: dict[str, Any], turn: Turn) -> FormStep:
        text = turn.text or ""
        # the resident's words first: 不要透露我的电话 may well be classified as deny
        if _CONFIDENTIAL_NO.search(text):
            return FormStep(slots={"confidential": False})
        if _CONFIDENTIAL_YES.search(text):
            return FormStep(slots={"confidential": True})
        if turn.intent in ("deny", "affirm"):
            return FormStep(slots={"confidential": turn.intent == "affirm"})
        return FormStep(slots={"confidential": None})

    def answer_confirm(self, slots: dict[str, Any], turn: Turn) -> FormStep:
        text = turn.text or ""
        mentions = [] if turn.from_button else self._mentions(turn)
        if mentions and "location" in (slots.get("prefilled") or []):
            # "不是这里，是锦绣社区": the place the resident names replaces the prefilled one
            # (nothing of the QR-code community may survive: the codes decide the routing)
            step = FormStep(slots={"confirm": None, "location_asked": 0, "location": None, "district_code": None,
                                   "street_code": None, "community_code": None,
                                   "prefilled": [p for p in slots["prefilled"] if p != "location"] or None})
            self._take_location(step, {**slots, "location_asked": 0}, mentions, text, first=False)
            return step
        if turn.from_button:  # 确认提交 / 取消
            if turn.intent == "affirm":
                return FormStep(slots={"confirm": True})
            return self.cancel() if turn.intent == "deny" else FormStep(slots={"confirm": None}).say("utter_confirm_again")
        if _CANCEL.search(text) or (turn.intent == "deny" and _GIVE_UP.search(text)):
            return self.cancel()  # a cancel is a cancel: nothing about the category is learnt
        current = slots.get("category")
        chosen = self.categories.choose(text, turn.intent, exclude=[current] if current else [])
        if chosen and (turn.intent != "affirm" or _CORRECTION_CUE.search(text)):
            # "不对，是化工厂排废气污染，不是噪音": the category changes, the summary is shown again
            step = FormStep(slots={"category": chosen, "confirm": None})
            step.inbox = {"denied": current, "intent": chosen, "text": slots.get("description")}
            return step
        if turn.intent == "deny" or _CORRECTION_CUE.search(text):
            if int(slots.get(REFUSALS) or 0) >= 1:  # the second no: a person takes over
                return FormStep(slots={"confirm": None}, handoff=SUMMARY_REFUSED)
            return FormStep(slots={"confirm": None}).say("utter_confirm_what_wrong")
        if turn.intent == "affirm" or re.search(r"确认|提交|没问题|对的|是的", text):
            return FormStep(slots={"confirm": True})
        return FormStep(slots={"confirm": None}).say("utter_confirm_again")


def summary_variables(slots: Mapping[str, Any], category_names: Mapping[str, str] = CATEGORIES) -> dict[str, str]:
    from bot.text import mask_personal_data, mask_phone, shorten

    phone = slots.get("phone")
    has_phone = bool(phone) and phone != NO_VALUE
    photo = slots.get("photo")
    return {
        "category_name": category_names.get(slots.get("category") or "", "未分类"),
        "location": slots.get("location") or "未提供",
        "description": shorten(mask_personal_data(slots.get("description") or ""), 120),
        "photo": "已上传" if photo and photo != NO_VALUE else "无",
        "phone": mask_phone(phone) if has_phone else "未留",
        "confidential": ("保密：是" if slots.get("confidential") else "保密：否") if has_phone else "",
        "prefill_note": prefill_note(slots),
    }


# what precedes a place in "不知道 就是毛纺厂家属院", "不清楚，反正在老城那边"
_UNSURE_LEAD = re.compile(r"^(?:不知道|不清楚|不晓得|不确定|说不清|说不好|记不清|不太清楚|我也|反正|就是|好像是|应该是|大概是|"
                          r"可能是|大概|好像|可能|就在|就|在|[啊呀吧呢嘛哦噢额呃，,。.！!、\s])+")


_NO_PLACE = re.compile(r"说不上|不记得|忘了|记不住|搞不清|不好说|^(?:好的?|对|是的?|嗯+|行|可以|谢谢)$|"
                       r"^(?:我家|我们|咱们|家)?(?:那边|这边|那里|这里|那儿|这儿|附近|周边|门口|楼下|楼上|对面|旁边|里|外)+$")


_PLACE_END = re.compile(r"(?:区|村|路|街|巷|道|广场|市场|大厦|中心|花园|家园|苑|城|院|楼|厂|寺|庙|公园|站|桥|湖|庄|园|校|馆|店|"
                        r"场|号|栋|座|门|口|所|府|营|屯|湾|滩|沟|坝|渠|镇|乡|旗|县|里|堡|厦|墅|郡|居|舍|宫|塔|殿|地|片)$")


def _said_place(text: str) -> str:
    """What a location answer names after "don't know" and fillers: "" when nothing is left,
    it asks something, or it is too long to be a place (a description typed in the wrong place)."""
    text = (text or "").strip()
    if _QUESTION.search(text):
        return ""
    rest = _UNSURE_LEAD.sub("", text).strip(" ，,。.！!啊呀吧呢")
    if meaningful_chars(rest) < 2 or len(rest) > 20 or _SKIP.search(rest) or _NO_PLACE.search(rest):
        return ""
    # a name ends like one (金桥开发区, 毛纺厂家属院); "路灯坏了" is a description, not a place
    return rest if _PLACE_END.search(rest) else ""


def prefill_note(slots: Mapping[str, Any]) -> str:
    """Tells the resident what we filled in without asking (and how to change it)."""
    prefilled = slots.get("prefilled") or []
    notes = []
    if "location" in prefilled:
        notes.append("地点按您关注公众号时扫描的社区二维码填写；不对的话，直接回复正确的街道或社区即可修改。")
    if "photo" in prefilled and slots.get("photo") and slots.get("photo") != NO_VALUE:
        notes.append("照片是您在描述问题之前发来的那张。")
    return "".join(f"\n（{n}）" for n in notes)  # each on its own line after the summary
