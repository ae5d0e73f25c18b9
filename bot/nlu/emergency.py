"""Emergency = evidence of danger to people or property NOW, in any register.

`evidence(text)` looks, clause by clause, for a sign of immediate danger (someone in the
water, trapped, a fire burning, gas smelled, someone hurt or unconscious, a fight with
weapons, a child shut in a car, a live wire sparking...). A sign does not count when its
clause makes it hypothetical, feared, past or denied (万一着火了怎么办, 怕有人掉下去,
上周有人摔伤了, 没有人受伤): alarming words alone are not an emergency.

The Rasa component `EmergencyEvidence` runs after the intent classifier:
- strong evidence → intent `emergency` (whatever the classifier said: a calm 12345
  transcript of a drowning is an emergency);
- weak evidence (smoke, a child crying in a car...) → `emergency` only when the classifier
  also ranks it high;
- no evidence → the classifier's `emergency` stands only when it is very sure and the text
  has no hypothetical/past marker; otherwise it drops out of first place and the next
  intent is read.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Text, Tuple

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from bot.text import normalise

EMERGENCY = "emergency"

_PERSON = r"(?:人|老人|孩子|小孩|儿童|学生|男的|女的|男子|女子|老头|老太|大爷|大妈|宝宝|婴儿|幼儿|工人|司机|行人|邻居|老伴|老头子|我爸|我妈|我)"
STRONG = [
    # in the water
    r"落水|溺水|掉(?:进|到|入|下)(?:了)?(?:河|湖|水|池塘|水库|冰窟窿|冰窟|井|窨井|水渠|渠|化粪池)|掉(?:了)?(?:河|湖|水|冰窟窿|井)里|"
    r"(?:掉|跌|摔|坠)(?:进|入|到)(?:了)?[^，,。]{1,12}(?:井|河|湖|水库|池塘|冰窟窿|化粪池|深坑|基坑)(?:里|中|内)?",
    # trapped
    r"被困(?!扰)|困在|被关在|关在电梯|卡在电梯|(?:电梯|屋里|房间|地下室|车库)[^，,。！!？?车]{0,12}(?:出不来|出不去|打不开门)",
    r"困(?:在)?电梯|关(?:在)?电梯里|电梯里(?:还)?(?:有|关着|困着)人|人(?:被)?(?:关|困|卡)(?:在)?(?:里面|里头)|"
    r"(?:出不来|出不去)了?[^，,。]{0,6}电梯|(?:在|关|困)里(?:面|头|边)[^，,。]{0,4}(?:出不来|出不去)|电梯[^，,。]{0,6}(?:卡住|卡在|停在半|停在两层)",
    # fire now
    r"(?<![打点不])着火|起火|失火|火灾|烧起来|烧了起来|烧着了|着了火|冒火|火光|燃起来|火(?:很|特别|非常|越来越)大|火苗|明火|爆炸",
    # gas smelled or leaking
    r"(?:煤气|燃气|天然气|液化气)(?:味|泄漏|泄露|漏了|漏气|在漏|管[^，,。]{0,4}漏)|(?:一股|很大的?|很浓的?|好大的?|特别大的?)(?:煤气|燃气|天然气)"
    r"|闻(?:到|着|见)[^，,。]{0,6}(?:煤气|燃气|天然气|液化气)|(?:燃气|煤气|天然气)管(?:道|子)?[^，,。]{0,6}(?:破|断|裂|冒气|呲)|煤气中毒|一氧化碳",
    # hurt, unconscious
    r"受伤|流血|出血|血流|昏迷|晕倒|晕过去|昏过去|叫不醒|不省人事|没(?:有)?(?:了)?(?:呼吸|心跳)|抽搐|倒地不起|"
    r"躺(?:在地上)?(?:着)?不动|倒在(?:地上|血泊)|(?:摔|倒)[^，,。]{0,6}(?:起不来|动不了|不能动|流血|不动)|骨折|头破|"
    r"(?:浑身|满脸|满头|一身)是血|(?:人|他|她|叫)[^，,。]{0,4}没(?:了)?(?:有)?反应|喘不上气|喘不过气|心脏病犯|犯病了|休克|口吐白沫|中毒|"
    r"(?:人|男子|女子|男的|女的|老人|老太太|老头|大爷|大妈|孩子|小孩|学生|老伴|父亲|母亲|其父|其母)[^，,。把将]{0,5}"
    r"(?:倒在(?:路边|路上|路旁|街上|楼道|家里|屋里|门口|雪地|卫生间|厕所|地)|倒地)|昏倒|晕厥|"
    r"在(?:河|湖|水|水库|池塘)里(?:扑腾|挣扎)|被(?:水|洪水|河水)冲走|(?:狗|犬)[^，,。]{0,4}(?:正在|在)咬",
    r"(?:被|让)(?:车|汽车|货车|卡车|电动车|公交车)?撞(?:了|倒|伤)|车祸|砸伤|砸(?:到|着)(?:了)?人|压在(?:下面|底下)|被埋",
    # violence
    r"打架|斗殴|打起来|持刀|拿(?:着)?刀|动(?:了)?刀|砍人|捅(?:了|伤)?人|行凶|抢劫|(?:正在|在)打人|殴打|被打(?:了|伤)|挥刀|"
    r"拿(?:着)?(?:砍刀|斧子)|抢(?:包|东西)",
    # someone fell in, someone still inside a stuck lift, someone not answering (calm and elderly words)
    r"(?:有人|人|孩子|小孩|老人|老伴|男子|女子|大爷|大妈|学生)[^，,。把将]{0,4}(?:掉|摔|跌|栽)(?:了)?(?:下去|进去)了",
    r"(?:老伴|老头|老太|孩子|小孩|孙子|孙女|我妈|我爸|母亲|父亲|其母|其父|老人|有人|人)[^，,。]{0,3}(?:还)?(?:在|关在|困在|卡在)电梯(?:里|里头|里面|里边|内)"
    r"|电梯[^，,。]{0,10}(?:里头|里面|里边)[^，,。]{0,4}(?:有人|关着人|困着人|人还在|还有人)",
    r"(?:喊|叫)(?:他|她|人)?(?:也|都)?不应|(?:老伴|老头|老人|孩子|人)[^，,。]{0,3}快不行了",
    # a child in a car
    r"(?:孩子|小孩|婴儿|宝宝|幼儿)[^，,。]{0,8}(?:锁|关|困|闷)(?:在)?车(?:里|内)|(?:锁|关|闷)(?:在)?车(?:里|内)[^，,。]{0,8}(?:孩子|小孩|婴儿|宝宝|幼儿)",
    # live wires, people about to fall or jump
    r"(?:电线|高压线|电缆|电线杆|变压器|电箱)[^，,。]{0,10}(?:冒火花|打火花|冒火|着火|噼啪|火花)|触电|电到人|电着人|(?:人|孩子|小孩)[^，,。]{0,6}(?:碰|摸|挨)(?:到|着)了?[^，,。]{0,4}(?:电线|高压线)",
    r"跳楼|轻生|自杀|要跳河|割腕|(?:站|坐|爬)(?:在|到)?(?:楼顶|窗台|阳台)(?:边|外)|挂在(?:阳台|窗户|窗)外",
    r"请求(?:立即|马上|紧急)?(?:救援|救助|救人)|(?:叫|派|来)(?:个|辆)?救护车|需要救护车|紧急求助",
]
# hurt words do not count in a text about a dog bite or a work injury (their own categories)
_HURT_CONTEXT = re.compile(r"狗|犬|工伤|医药费|赔偿|医院|住院|报销")
_HURT = re.compile(r"受伤|流血|出血|血流")
WEAK = [
    r"冒烟|冒黑烟|冒浓烟|浓烟|烟很大|烟特别大|焦糊味|烧焦味",
    r"(?:孩子|小孩)[^，,。]{0,10}(?:车里|车内)",
    r"掉下去|摔下去|坠落|坠楼",
    r"电线[^，,。]{0,8}(?:掉|断|垂|耷拉)[^，,。]{0,8}(?:有人|孩子|小孩|行人|人来人往|过路)",
    r"救命|快来人|救救|打(?:了)?(?:110|119|120)|(?<!燃气)报警(?!器)",
]
# what makes a clause not about danger now
NOT_NOW = re.compile(
    r"万一|如果|要是|假如|一旦|担心|担忧|害怕|怕(?!了)|恐怕|会不会|容易|迟早|早晚|隐患|可能会|差点|差一点|险些|"
    r"防止|预防|避免|以防|防范|小心|注意|"
    r"上(?:个)?(?:周|星期|礼拜|月)|去年|前年|之前|以前|曾经|前几天|前些天|那年|上回|上次|以往|当时|"
    r"天天|每天|每晚|经常|总是|老是|三天两头|动不动|好几回|好几次|多次|几回了|几次了|又一次|"
    r"没有?(?:人)?(?:受伤|着火|起火|被困|落水)|没出事|里面没人|没有人在里面|没人被困|演练|演习|电视|新闻|电影|小说|游戏|"
    r"哪个部门|找谁|灭火器|消防设施|消防栓|消防通道|"
    r"吓死|吓人|要出人命|出人命|"
    r"已经(?:救|送|扑灭|灭了|没事|好了|处理)|救上来了|灭了|扑灭|处理完|才(?:来|到|修好|放出来|出来|救出来)|后来|结果",
)
# yesterday's danger is past unless it is still going on (从昨晚到现在一直有煤气味)
_PAST_DAY = re.compile(r"昨天|昨晚|昨儿|前天|前晚|前两天|那天")
_STILL = re.compile(r"一直|还在|还是|到现在|现在|仍|至今")
_CLAUSE = re.compile(r"[。！!？?；;，,\n]+|\s{1,}")
_STRONG = [re.compile(p) for p in STRONG]
_WEAK = [re.compile(p) for p in WEAK]


def _clauses(text: str) -> List[str]:
    return [c for c in _CLAUSE.split(text) if c.strip()]


def evidence(text: str) -> Tuple[Optional[str], Optional[str]]:
    """(strong sign, weak sign) found in a clause that is about now; None where none."""
    clean = normalise(text or "")
    strong = weak = None
    clauses = _clauses(clean)
    # a sign split over two short clauses (摔倒了 起不来了) counts when neither is hypothetical/past
    # (and the clause before them does not put them in the past: 去年冬天 我老伴摔倒了 起不来)
    pairs = [clauses[i] + clauses[i + 1] for i in range(len(clauses) - 1)
             if len(clauses[i]) <= 12 and len(clauses[i + 1]) <= 12
             and not (i and NOT_NOW.search(clauses[i - 1]))]
    for clause in clauses + pairs:
        if NOT_NOW.search(clause) or (_PAST_DAY.search(clause) and not _STILL.search(clause)):
            continue
        for rx in _STRONG:
            m = rx.search(clause)
            if m and strong is None and not (_HURT.fullmatch(m.group(0)) and _HURT_CONTEXT.search(clean)):
                strong = m.group(0)
        for rx in _WEAK:
            m = rx.search(clause)
            if m and weak is None:
                weak = m.group(0)
    return strong, weak


# fear alone (我害怕得很, 吓死了) is how a frightened caller talks too: it takes a clause's
# sign away, but over a whole message without a sign only the hypothetical/past markers count
_FEAR = re.compile(r"担心|担忧|害怕|怕|恐怕|小心|注意|吓死|吓人")


def hypothetical(text: str) -> bool:
    clean = normalise(text or "")
    return any(not _FEAR.fullmatch(m.group(0)) for m in NOT_NOW.finditer(clean))


def decide(text: str, ranking: List[Dict[str, Any]], weak_min: float = 0.25, sure_min: float = 0.1,
           strong_min: float = 0.05) -> List[Dict[str, Any]]:
    """The intent ranking with `emergency` put first (confidence at least 0.9, so the fallback
    never hides it) or taken out of first place.

    strong sign: emergency unless the classifier finds it wholly unlike one (p < strong_min:
    the words are there, the message is about something else, e.g. 拿棍子捅下水道);
    weak sign: emergency when p ≥ weak_min; no sign: emergency when the classifier ranks it
    first with p ≥ sure_min and nothing in the text makes it hypothetical or past."""
    if not ranking:
        return ranking
    strong, weak = evidence(text)
    probs = {r["name"]: float(r["confidence"]) for r in ranking}
    p_em = probs.get(EMERGENCY, 0.0)
    top = ranking[0]["name"]
    if strong and p_em >= strong_min:
        say = True
    elif weak and p_em >= weak_min:
        say = True
    elif top == EMERGENCY:
        say = p_em >= sure_min and not strong and not hypothetical(text)
        say = say or bool(strong)
    else:
        say = False
    if say:
        first = {"name": EMERGENCY, "confidence": max(p_em, 0.9)}
        return [first] + [r for r in ranking if r["name"] != EMERGENCY]
    if top == EMERGENCY:
        rest = [r for r in ranking if r["name"] != EMERGENCY]
        if not rest:
            return ranking
        norm = sum(r["confidence"] for r in rest) or 1.0
        return [{"name": r["name"], "confidence": r["confidence"] / norm} for r in rest] + \
               [{"name": EMERGENCY, "confidence": 0.0}]
    return ranking


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class EmergencyEvidence(GraphComponent):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {"weak_min": 0.25, "sure_min": 0.1, "strong_min": 0.05}

    def __init__(self, config: Dict[Text, Any]) -> None:
        self._config = config

    @classmethod
    def create(cls, config, model_storage, resource, execution_context: ExecutionContext) -> "EmergencyEvidence":
        return cls(config)

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            ranking = message.get(INTENT_RANKING_KEY)
            if not message.get(TEXT) or not ranking:
                continue
            new = decide(message.get(TEXT), [dict(r) for r in ranking], self._config["weak_min"],
                         self._config["sure_min"], self._config["strong_min"])
            if new[0] != ranking[0]:
                message.set(INTENT, {"name": new[0]["name"], "confidence": new[0]["confidence"]}, add_to_output=True)
                message.set(INTENT_RANKING_KEY, new, add_to_output=True)
        return messages
