"""Emergency = evidence of danger to people or property NOW, in any register.

`evidence(text)` looks, clause by clause, for the shapes of an emergency: a person in a danger
state (落水, 被困, 倒地, 昏迷, 流血, 嘴歪了, 叫不应, 走失), a hazard present (着火, 冒烟, 燃气味,
a live wire sparking or down with people near), violence or a break-in now (打架, 持刀, 撬门),
a call for rescue (请求救援, 120打不通). A sign does not count when its clause makes it
hypothetical, feared, habitual, past or denied (万一着火了怎么办, 怕有人掉下去, 天天, 上周有人摔伤了,
没有人受伤), nor when the story is set in the past by an earlier clause (昨天晚上 变压器冒火了 然后
就停电了) until a clause brings it back to now (现在, 刚才, 还在). Some signs need the rest of
the message (还在里头 after 电梯, 一股味 after 燃气, 没回来 after 痴呆). A sign is only weak in a
"what if" (砸着人咋办) and when sparks cut the power or are reported for repair (抢修, not 救援)
with nobody near; smoke from a chimney, a factory or a barbecue is no sign.

The Rasa component `EmergencyEvidence` runs after the intent classifier:
- strong evidence → intent `emergency` (whatever the classifier said: a calm 12345
  transcript of a drowning is an emergency), unless the classifier finds it wholly unlike one;
- weak evidence → `emergency` only when the classifier also ranks it high enough;
- no evidence → the classifier's `emergency` stands only when a clause about now tells of a
  situation (urgency, a body, fire, water, a lift...) and nothing makes it hypothetical or past
  (商场门口有人发传单 is not one); otherwise it drops out of first place and the next intent is read.
"""
from __future__ import annotations

import re
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from bot.text import normalise

EMERGENCY = "emergency"

_PEOPLE = (r"(?:人|老人|孩子|小孩|儿童|学生|男的|女的|男子|女子|老头|老太|大爷|大妈|宝宝|婴儿|幼儿|工人|司机|行人|"
           r"邻居|老伴|老头子|我爸|我妈|父亲|母亲|其父|其母|孙子|孙女|儿子|女儿|爷爷|奶奶|娃娃|娃|幼童|路人)")
# (kind, pattern): the kind matters for the exceptions below
STRONG = [
    # in the water
    ("water", r"落水|溺水|掉(?:进|到|入|下)(?:了)?(?:河|湖|水|池塘|水塘|水库|冰窟窿|冰窟|井|窨井|水渠|渠|化粪池|河沟|水沟)|掉(?:了)?(?:河|湖|水|冰窟窿|井)里|"
     r"(?:掉|跌|摔|坠)(?:进|入|到)(?:了)?[^，,。]{1,12}(?:井|河|湖|水库|池塘|冰窟窿|化粪池|深坑|基坑)(?:里|中|内)?|"
     r"在(?:河|湖|水|水库|池塘|水塘|河沟|水沟|冰窟窿)(?:里|中)[^，,。]{0,4}(?:扑腾|挣扎|漂|浮|喊|沉)|被(?:水|洪水|河水|大水)(?:冲走|卷走|围困|围住)|"
     r"(?:水|洪水)(?:都|已经|已)?(?:没|淹|漫)(?:过|到)(?:了)?(?:腰|胸|脖子|车顶|头顶|车门|车窗)|(?:落|"
         r"跌|坠|掉)(?:入|进)(?:了)?(?:冰窟|水|河|湖|井|粪池)|" + _PEOPLE + r"[^，,。]{0,6}(?:沉下去|"
         r"冲走了|漂走了)"),
    # trapped
    ("trapped", r"被困(?!扰)|困在|被关在|关在电梯|卡在电梯|(?:电梯|屋里|房间|地下室|车库)[^，,。！!？?车]{0,12}(?:出不来|出不去|打不开门)|"
     r"困(?:在)?电梯|关(?:在)?电梯里|电梯里(?:还)?(?:有|关着|困着)人|人(?:被)?(?:关|困|卡)(?:在)?(?:里面|里头)|"
     r"(?:出不来|出不去)了?[^，,。]{0,6}电梯|(?:在|关|困)里(?:面|头|边)[^，,。]{0,4}(?:出不来|出不去)|电梯[^，,。]{0,6}(?:卡住|卡在|停在半|停在两层)|"
     r"(?:头|手|脚|腿|胳膊|身子)[^，,。]{0,3}卡(?:在|进)[^，,。]{0,8}(?:出不来|拔不出|动不了|抽不出)|卡在[^，,。]{0,8}(?:出不来|拔不出来|动不了)|"
     r"无法脱身|脱不了身|被压住|压住(?:了)?(?:一个|一名)?" + _PEOPLE + r"|(?:人|腿|脚|身子|腰)[^，,。]{0,2}被压|压在(?:下面|底下|车下|车底)|无法动弹|动弹不了|"
     r"(?:里(?:头|面)?|上)还(?:坐着|有|困着|关着)(?:个|一个)?(?:人|老人|孩子|小孩)|(?:仍|还)有(?:人|人员)(?:在|被困)|"
     r"(?:有人|人还|人都|车里(?:的)?人)[^，,。]{0,4}(?:出不来|出不去)|电梯(?:突然)?(?:往下掉|下坠|坠落|溜梯|冲顶)"),
    # fire now
    ("fire", r"(?<![打点不])着火|起火|失火|火灾|烧起来|烧了起来|烧着了|着了火|着起来|冒火(?!花)|火光|燃起来|火(?:很|特别|非常|越来越)大|火苗|明火|爆炸"),
    ("electric", r"(?:电线|高压线|电缆|电线杆|变压器|电箱|配电箱|配电室|电表箱|线路)[^，,。]{0,14}(?:冒火花|打火(?!机)|冒火|着火|起火|噼啪|火花|火星)|"
     r"冒火花|火花四溅|打火花|电火花|(?:电线|高压线|电缆)[^，,。]{0,8}(?:断|落|掉)[^，,。]{0,6}(?:带电|火花)|"
     r"(?:断|掉|垂)(?:落|下)?(?:的)?(?:电线|高压线|电缆)[^，,。]{0,4}(?:带电|冒火|打火)"),
    # gas smelled or leaking
    ("gas", r"(?:煤气|燃气|天然气|液化气)(?:的)?(?:味|气味|泄漏|泄露|漏了|漏气|在漏|管[^，,。]{0,4}漏)|"
        r"(?:一股|很大的?|很浓的?|好大的?|特别大的?)(?:煤气|燃气|天然气)"
     r"|闻(?:到|着|见)[^，,。]{0,6}(?:煤气|燃气|天然气|液化气)|(?:燃气|煤气|天然气)管(?:道|子)?[^，,。]{0,6}(?:破|断|裂|冒气|呲)|煤气中毒|一氧化碳|烧炭"),
    # hurt, unconscious, taken ill
    ("hurt", r"受伤|流血|出血|血流|大出血|烫伤|烧伤|烫着了|骨折|摔断|头破|(?:浑身|满脸|满头|一身)是血|见血"),
    ("ill", r"昏迷|晕倒|晕过去|昏过去|叫不醒|喊不醒|(?:叫|喊|推|摇)不起来|推不醒|摇不醒|"
     r"躺(?:在)?(?:地上|路边|路上|马路上|雪地里?|楼道里?)[^，,。]{0,6}(?:好半天|半天|好久|很久|好长时间|没动)|"
     r"不省人事|没(?:有)?(?:了)?(?:呼吸|心跳)|抽搐|抽风|倒地不起|"
     r"躺[^，,。]{0,6}(?:一动不动|不动了?|起不来|没起来|没(?:有)?反应|叫不醒)|地上[^，,。]{0,4}(?:起不来|动不了)|倒在(?:地上|血泊)|(?:摔|倒)[^，,。]{0,6}(?:起不来|动不了|不能动|流血|不动)|"
     r"(?:人|他|她|叫)[^，,。]{0,4}没(?:了)?(?:有)?反应|嘴(?:也|都)?歪了|口眼歪|站不住了|(?:突然|一下子?|就)倒(?:那|那儿|那了|下了|地上)|喘不(?:上|过)(?:来)?气|上不来气|呼吸困难|心脏病犯|犯病了|休克|口吐白沫|"
     r"(?:胸口|心口)(?:疼|痛|闷)|胸痛|说不出话|半边身子|口眼歪斜|(?:嘴唇|嘴|脸)(?:色)?(?:发紫|发青|青紫|(?:都|也|已经)?(?:发)?(?:紫|青)了)|意识(?:不清|模糊)|神志不清|呼之不应|"
     r"误(?:食|服|吃|喝)|喝了(?:农药|敌敌畏)|吃了(?:老鼠药|耗子药|安眠药)|中毒|"
     r"(?:人|男子|女子|男的|女的|老人|老太太|老头|大爷|大妈|孩子|小孩|学生|老伴|父亲|母亲|其父|其母)[^，,。把将]{0,5}"
     r"(?:倒在(?:路边|路上|路旁|街上|楼道|家里|屋里|门口|雪地|卫生间|厕所|地)|倒地)|昏倒|晕厥|(?:狗|犬)[^，,。]{0,4}(?:正在|在)咬"),
    ("traffic", r"(?:被|让)(?:[^，,。]{0,5}车)?(?:给)?(?:撞|刮|碾|轧)(?:了|倒|伤|飞)|车祸|翻车|侧翻|"
     r"(?:撞|刮|碰)倒了?(?:人|一个|一名|一位|老人|孩子|行人)|撞(?:了|到)(?:人|行人|孩子|老人)|砸伤|砸(?:到|着)(?:了)?人|被埋"),
    # violence, a break-in
    ("violence", r"打架|斗殴|打起来|打成一团|扭打|厮打|互殴|群殴|拳打脚踢|动手了|动起手|持刀|持械|拿(?:着)?刀|动(?:了)?刀|砍人|捅(?:了|伤)?人|被捅|行凶|"
     r"抢劫|(?:正在|在)打人|殴打|被打(?:了|伤)|挥刀|拿(?:着)?(?:砍刀|斧子|斧头)|拿(?:着)?(?:棍子|铁棍|砖头|板砖|酒瓶|锤子)[^，,。]{0,6}(?:打|砸|追|拍|抡)|抢(?:包|东西|孩子)|"
     r"砸门|踹门|撬[^，,。]{0,5}(?:门|锁|窗)|入室|(?:有|进了?)(?:小偷|贼)|家暴|追着(?:打|砍|砸)|掐(?:着)?脖子|绑架|要杀人"),
    # someone fell in, someone still inside a stuck lift, someone not answering (calm and elderly words)
    ("fell", _PEOPLE + r"[^，,。把将]{0,4}(?:掉|摔|跌|栽|滑)(?:了)?(?:下去|进去)了|(?:一下|一下子|突然|"
        r"不小心|脚下一滑)[^，,。]{0,3}(?:掉|滑|栽|摔|跌)(?:了)?(?:下去|进去)了"),
    ("trapped", r"(?:老伴|老头|老太|孩子|小孩|孙子|孙女|我妈|我爸|母亲|父亲|其母|其父|老人|有人|"
        r"人)[^，,。]{0,3}(?:还)?(?:在|关在|困在|卡在)电梯(?:里|里头|里面|里边|内)"
     r"|电梯[^，,。]{0,10}(?:里头|里面|里边)[^，,。]{0,4}(?:有人|关着人|困着人|人还在|还有人)"),
    ("ill", r"(?:喊|叫)[^，,。]{0,6}(?:不应|不理|不答应|不吭声|没(?:有)?(?:反应|回应|答应|人应|动静|声音|声儿))|"
     r"(?:老伴|老头|老人|孩子|人)[^，,。]{0,3}快不行了"),
    # a child in a car; a missing child or confused old person
    ("child", r"(?:孩子|小孩|婴儿|宝宝|幼儿)[^，,。]{0,8}(?:锁|关|困|闷)(?:在)?车(?:里|内)|(?:锁|关|"
        r"闷)(?:在)?车(?:里|内)[^，,。]{0,8}(?:孩子|小孩|婴儿|宝宝|幼儿)|"
     r"车(?:里|内)[^，,。]{0,4}(?:反)?(?:锁|关|闷|困)(?:着)?(?:了)?[^，,。]{0,4}(?:孩子|小孩|婴儿|宝宝|幼儿|幼童|儿童|娃)|"
     r"走失|走丢|(?:孩子|小孩|老人|老伴|老头|老太|孙子|孙女|娃)[^，,。]{0,10}(?:丢了|不见了|找不着了|找不到了)|至今未归|(?:到现在|到这会儿)(?:还|都|也)?(?:没|未)(?:回来|回家)"),
    # live wires touching people, people about to fall or jump
    ("electric_person", r"触电|电到人|电着人|(?:人|孩子|小孩)[^，,。]{0,6}(?:碰|摸|挨)(?:到|着)了?[^，,。]{0,4}(?:电线|高压线)"),
    ("jump", r"跳楼|轻生|自杀|寻短见|想不开|要跳(?:河|桥|楼)|割腕|(?:站|坐|爬|蹲)(?:在|到)?(?:楼顶|天台|窗台|阳台|桥)(?:边|外|栏杆外|护栏外)|"
     r"(?:楼顶|天台|窗台|桥)(?:边上|边缘)[^，,。]{0,6}(?:站|坐|徘徊)|(?:楼顶|天台|房顶)[^，,。]{0,8}(?:边上|边缘|护栏外|栏杆外)|"
     r"在(?:楼顶|天台)?边上(?:走来走去|站着|坐着|徘徊)|挂在(?:阳台|窗户|窗)外"),
    ("rescue", r"请求(?:立即|马上|紧急)?(?:救援|救助|救人|急救)|(?:120|119|110)[^，,。]{0,4}(?:占线|"
        r"打不通|没人接)|(?:叫|派|来)(?:个|辆)?救护车|需要救护车|紧急求助|急救"),
]
# hurt words do not count in a text about a dog bite, a work injury, a hospital or a refund (their own categories)
_HURT_CONTEXT = re.compile(r"狗|犬|工伤|医药费|赔偿|索赔|退款|医院|住院|报销|老板|商家|维权|说法|食物中毒|吃坏")
_HURT_KINDS = {"hurt"}
_HURT_WORDS = re.compile(r"受伤|流血|出血|血流|中毒|烫伤|骨折")
WEAK = [
    ("smoke", r"冒烟|冒黑烟|冒浓烟|浓烟|烟很大|烟特别大|焦糊味|烧焦味|(?:全是|都是|一屋子|满屋子?|一楼道)(?:的)?烟|烟雾|呛得(?:睁不开|喘不|出不)"),
    ("child", r"(?:孩子|小孩)[^，,。]{0,10}(?:车里|车内)"),
    ("fell", r"掉下去|摔下去|坠落|坠楼"),
    ("electric", r"电线[^，,。]{0,8}(?:掉|断|垂|耷拉)[^，,。]{0,8}(?:有人|孩子|小孩|行人|人来人往|过路|学生|围观|村民|路人)"),
    ("help", r"救命|快来人|救救|打(?:了)?(?:110|119|120)|(?<!燃气)报警(?!器)"),
    ("welfare", r"敲门(?:也|都)?(?:没人|无人)(?:应|开|回应|答应)|无人应答|好几天没(?:见|出门|动静)|多日未(?:出门|露面|见)"),
    ("collapse", r"塌了|坍塌|倒塌|塌下来|塌落"),
    ("electric", r"漏电|带电"),
]
# smoke from a chimney, a factory, a barbecue or burning rubbish is an ecology complaint
_SMOKE_CONTEXT = re.compile(r"烟囱|工厂|厂子|厂区|厂房|化工|企业|排放|偷排|焚烧|烧(?:垃圾|秸秆|树叶|轮胎|塑料|荒|纸)|烧烤|油烟|废气|熏")
# sparks that cut the power or that the writer asks to have repaired (抢修, not 救援), with
# nobody near and nothing urgent said, are a 供电 repair
_POWER_CUT = re.compile(r"停电|没电|断电|来电|没有电|跳闸")
_REPAIR = re.compile(r"抢修|维修|来修|给修|修修|修一下|修一修|更换|换线")
_ELECTRIC_THING = re.compile(r"电线|电箱|变压器|线路|配电|电缆|电表|电闸")
_PEOPLE_NEAR = re.compile(r"有人(?:被|在|困)|人来人往|行人|路人|路过|围观|底下就是|旁边就是|人在(?:底下|旁边|附近|里)|"
                          r"快来|赶紧|马上|救命|正在(?:烧|着|冒)|还在(?:烧|着|冒)")
# what makes a clause not about danger now
NOT_NOW = re.compile(
    r"万一|如果|要是|假如|一旦|哪天|保险|理赔|赔吗|担心|担忧|害怕|怕(?!了)|恐怕|会不会|容易|迟早|早晚|隐患|可能会|差点|差一点|险些|"
    r"防止|预防|避免|以防|防范|小心|注意|"
    r"上(?:个)?(?:周|星期|礼拜|月)|去年|前年|之前|以前|曾经|前几天|前些天|那年|上回|上次|以往|当时|"
    r"天天|每天|每晚|经常|总是|老是|三天两头|(?<!一)动不动|好几回|好几次|多次|几回了|几次了|又一次|"
    r"没有?(?:人)?(?:受伤|着火|起火|被困|落水)|没出事|里面没人|没有人在里面|没人被困|演练|演习|电视|新闻|电影|小说|游戏|"
    r"真(?:要|的|要是)?(?:着火|起火|失火|出事|有事|发生)|见过|"
    r"哪个部门|找谁|灭火器|消防设施|消防栓|消防通道|报警器|烟感|想问|咨询|请问|政策|补贴|"
    r"吓死|吓人|要出人命|出人命|"
    r"已经(?:救|送|扑灭|灭了|没事|好了|处理)|救上来了|灭了|扑灭|处理完|才(?:来|到|修好|放出来|出来|救出来)",
)
# the time a story is set in carries over to the clauses after it: 昨天晚上 变压器冒火了 然后就停电了
_PAST_FRAME = re.compile(r"年轻时|小时候|早些年|多年前|几年前|那些年|有一回|有一次|那回|那次|前阵子|前一阵|前些日子|前段时间|头些天|那会儿|年前|"
    r"上半年|昨天|昨晚|昨儿|前天|前晚|前两天|那天|上(?:个)?(?:周|星期|礼拜|月)|去年|前几天|前些天|上回|"
    r"上次|当时|之前|以前|曾经")
_NOW_FRAME = re.compile(r"一直|还在|还是|到现在|现在|仍|至今|正在|刚才|刚刚|这会儿|此刻|眼下|今天|今早|今晚|今儿|快来|赶紧|马上")
# signs that need the rest of the message: someone still inside (a lift named before), a smell
# (gas named before), a confused old person who wandered off
_CONTEXT_SIGNS = [
    (re.compile(r"电梯"), re.compile(r"(?:还在|困在|关在|卡在|在)(?:里头|里面|里边)(?:呢|出不来|出不去)?|(?:出不来|出不去)")),
    (re.compile(r"燃气|煤气|天然气|液化气|热水器|燃气灶|灶台"),
     re.compile(r"(?:有|一)股(?:子)?(?:味|怪味|臭味)|味(?:儿|道)?(?:还是|特别|很|好|太|越来越)?(?:大|冲|浓|呛)")),
    # coal heating at home (土暖气, 煤炉): headache, sickness or someone not waking is carbon monoxide
    (re.compile(r"土暖气|煤炉|炉子|蜂窝煤|烧煤|火炉|炭火|生火取暖"),
     re.compile(r"头晕|头疼|头痛|恶心|迷糊|晕乎|没醒|醒不过来")),
    # a home ventilator or oxygen machine that stopped (a power cut is then a danger to a person)
    (re.compile(r"呼吸机|制氧机|氧气机"), re.compile(r"停了|停电|没电|断电|不转|关机")),
    (re.compile(r"痴呆|阿尔茨海默|糊涂|不认路|智力|失智"),
     re.compile(r"(?:跑|走)(?:出去|丢)?了|不见了|没回来|没回家|未归|找不着|找不到|晃悠|乱走|走丢")),
]
# a sign in a "what if" question (树歪了 砸着人咋办) is only weak: the classifier decides
_DOUBT = re.compile(r"咋办|怎么办|咋整|怎么整|可咋")
# breathlessness from chimney or factory smoke (呛得人喘不上气) is the ecology complaint's words
_BREATH = re.compile(r"喘不(?:上|过)(?:来)?气|上不来气|呼吸困难")
# a person's body in danger now: the classifier reading the rest as a complaint (暖气不热，
# 我妈昏迷了) does not overrule these
BODY_KINDS = {"ill", "trapped", "water", "jump", "fell", "child", "electric_person", "context"}
# ill-health words a complaint also uses (熏得喘不上气, 饭店吃了中毒, 气得说不出话): these still
# need the classifier not to find the message wholly unlike an emergency
_IRRITANT = re.compile(r"呛|熏|臭|味|粉尘|灰尘|扬尘|烟|油烟|废气|雾霾")
_SOFT_ILL = re.compile(r"中毒|(?:胸口|心口)|胸痛|说不出话|犯病|心脏病|站不住|半边身子")
_CLAUSE = re.compile(r"[。！!？?；;，,\n]+|\s{1,}")
_STRONG = [(k, re.compile(p)) for k, p in STRONG]
_WEAK = [(k, re.compile(p)) for k, p in WEAK]


def _clauses(text: str) -> list[str]:
    return [c for c in _CLAUSE.split(text) if c.strip()]


def _now_clauses(clauses: list[str]) -> list[bool]:
    """Per clause: is it about now (not set in the past by itself or by the clauses before it)?"""
    out, past = [], False
    for clause in clauses:
        if _PAST_FRAME.search(clause) and not _NOW_FRAME.search(clause):
            past = True
        elif _NOW_FRAME.search(clause):
            past = False
        out.append(not past and not NOT_NOW.search(clause))
    return out


def evidence(text: str) -> tuple[str | None, str | None]:
    """(strong sign, weak sign) found in a clause that is about now; None where none."""
    strong, weak, _ = signs(text)
    return strong, weak


def signs(text: str) -> tuple[str | None, str | None, str | None]:
    """(strong sign, weak sign, the strong sign's kind)."""
    clean = normalise(text or "")
    strong = weak = strong_kind = None
    clauses = _clauses(clean)
    now = _now_clauses(clauses)
    # a sign split over two short clauses (摔倒了 起不来了) counts when both are about now
    pairs = [clauses[i] + clauses[i + 1] for i in range(len(clauses) - 1)
             if len(clauses[i]) <= 16 and len(clauses[i + 1]) <= 16 and now[i] and now[i + 1]]
    for clause in [c for c, ok in zip(clauses, now) if ok] + pairs:
        for kind, rx in _STRONG:
            m = rx.search(clause)
            if not m or strong is not None:
                continue
            if _DOUBT.search(clause) and kind not in ("rescue",):
                weak = weak or m.group(0)
                continue
            if kind in _HURT_KINDS | {"ill"} and _HURT_WORDS.fullmatch(m.group(0)) and _HURT_CONTEXT.search(clean):
                continue
            if kind == "ill" and _BREATH.fullmatch(m.group(0)) and "呛" in clause and _SMOKE_CONTEXT.search(clean):
                weak = weak or m.group(0)
                continue
            if kind == "ill" and (_SOFT_ILL.match(m.group(0)) or (_BREATH.fullmatch(m.group(0)) and _IRRITANT.search(clean))):
                kind = "ill_soft"
            electric = kind == "electric" or (kind == "fire" and _ELECTRIC_THING.search(clause))
            if electric and (_POWER_CUT.search(clean) or _REPAIR.search(clean)) and not _PEOPLE_NEAR.search(clean):
                weak = weak or m.group(0)
                continue
            strong, strong_kind = m.group(0), kind
        for kind, rx in _WEAK:
            m = rx.search(clause)
            if m and weak is None and not (kind == "smoke" and _SMOKE_CONTEXT.search(clean)):
                weak = m.group(0)
        for topic, rx in _CONTEXT_SIGNS:
            m = rx.search(clause)
            if m and strong is None and topic.search(clean) and not _DOUBT.search(clause):
                strong, strong_kind = m.group(0), "context"
    return strong, weak, strong_kind


def _situation_now(clean: str) -> bool:
    """A clause about now speaks of a situation (urgency, a body, fire, water, a lift...)."""
    clauses = _clauses(clean)
    return any(ok and _SITUATION.search(c) for c, ok in zip(clauses, _now_clauses(clauses)))


# fear alone (我害怕得很, 吓死了) is how a frightened caller talks too: it takes a clause's
# sign away, but over a whole message without a sign only the hypothetical/past markers count
_FEAR = re.compile(r"担心|担忧|害怕|怕|恐怕|小心|注意|吓死|吓人")
# without a sign the classifier alone may say emergency only about a situation: something
# urgent, a body, fire, water, a lift, a weapon (商场门口有人发传单 has none of these)
_SITUATION = re.compile(
    r"快来|快点|快派|快救|赶快|救|急|马上|立即|立刻|赶紧|正在|刚才|刚刚|还在|不行了|危险|哭|喊|血|火|烟|味|困|出不来|出不去|不动|不醒|倒|摔|"
    r"撞|掉|淹|打|刀|棍|砸|抢|偷|撬|跳|电梯|水里|河|湖|冰|井|晕|昏|疼|痛|喘|吐|抽|没回|找不")
# a weak sign said with urgency needs less from the classifier
_URGENT = re.compile(r"快|救|急|马上|立即|立刻|赶紧|正在|还在|现在")


def hypothetical(text: str) -> bool:
    clean = normalise(text or "")
    return any(not _FEAR.fullmatch(m.group(0)) for m in NOT_NOW.finditer(clean))


def decide(text: str, ranking: list[dict[str, Any]], weak_min: float = 0.25, sure_min: float = 0.1,
           strong_min: float = 0.05) -> list[dict[str, Any]]:
    """The intent ranking with `emergency` put first (confidence at least 0.9, so the fallback
    never hides it) or taken out of first place.

    strong sign: emergency unless the classifier finds it wholly unlike one (p < strong_min:
    the words are there, the message is about something else, e.g. 拿棍子捅下水道), except
    a person's body in danger (BODY_KINDS), which no complaint around it outweighs;
    weak sign: emergency when p ≥ weak_min (half that when said with urgency: 快, 救…);
    no sign: emergency when the classifier ranks it first with p ≥ sure_min, the text speaks
    of a situation (urgency, a body, fire, water…) and nothing makes it hypothetical or past."""
    if not ranking:
        return ranking
    strong, weak, kind = signs(text)
    clean = normalise(text or "")
    probs = {r["name"]: float(r["confidence"]) for r in ranking}
    p_em = probs.get(EMERGENCY, 0.0)
    top = ranking[0]["name"]
    if strong and (p_em >= strong_min or kind in BODY_KINDS):
        say = True
    elif weak and _DOUBT.search(clean):  # 着火了可咋办: only a classifier sure of an emergency
        say = p_em >= 0.5
    elif weak and p_em >= (weak_min / 2 if _URGENT.search(clean) else weak_min):
        say = True
    elif top == EMERGENCY:
        say = bool(strong) or (p_em >= sure_min and not hypothetical(text) and _situation_now(clean)
                               and not _SMOKE_CONTEXT.search(clean))
    else:
        say = False
    if say:
        # the rest share what is left, so that none comes near emergency (the fallback's
        # ambiguity check would otherwise turn 0.9 beside a complaint's 0.95 into "unsure")
        first = {"name": EMERGENCY, "confidence": max(p_em, 0.9)}
        rest = [r for r in ranking if r["name"] != EMERGENCY]
        scale = (1.0 - first["confidence"]) / (sum(r["confidence"] for r in rest) or 1.0)
        return [first] + [{"name": r["name"], "confidence": r["confidence"] * scale} for r in rest]
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
    def get_default_config() -> dict[str, Any]:
        return {"weak_min": 0.25, "sure_min": 0.1, "strong_min": 0.05}

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config

    @classmethod
    def create(cls, config, model_storage, resource, execution_context: ExecutionContext) -> EmergencyEvidence:
        return cls(config)

    def process(self, messages: list[Message]) -> list[Message]:
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
