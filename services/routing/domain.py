"""Which department owns a ticket: a first, simple keyword mapping.

Terms are matched as substrings of the lower-cased subject and description, which works for
Chinese (no spaces to split on) and English alike. The department with the most matched terms
wins; a tie goes to the one listed first. A ticket that matches nothing goes to triage.
"""

from dataclasses import dataclass

from shared.departments import DEPARTMENTS, SUPERVISION, TRIAGE
from shared.events import TicketContent

KEYWORDS: dict[str, tuple[str, ...]] = {
    "bj-education": ("学籍", "student registration", "北京中考", "北京高考", "exam eligibility"),
    "tj-education": ("入学", "幼儿园", "转学", "kindergarten", "school place", "enrol"),
    "bj-hrss": (
        "北京社保",
        "beijing social insurance",
        "北京户口",
        "beijing hukou",
        "养老金",
        "pension",
    ),
    "tj-hrss": (
        "社保",
        "social insurance",
        "劳动合同",
        "labour contract",
        "招聘",
        "recruit",
        "人才补贴",
        "talent subsidy",
        "工作许可",
        "work permit",
    ),
    "tj-police": ("户口", "hukou", "居住证", "residence permit", "身份证", "id card"),
    "tj-housing": ("人才公寓", "talent apartment", "住房补贴", "housing subsidy", "租房", "rental"),
    "tj-utilities": (
        "停电",
        "电力",
        "供水",
        "停水",
        "燃气",
        "宽带",
        "power outage",
        "electricity",
        "water supply",
        "gas",
        "broadband",
    ),
    "tj-tax": ("税", "发票", "invoice", "vat", "tax"),
    "tj-market": (
        "注册地址",
        "registered address",
        "商标",
        "trademark",
        "工商变更",
        "registration change",
        "食品许可",
        "food licence",
        "产品质量",
        "product quality",
    ),
    "tj-approval": (
        "营业执照",
        "business licence",
        "施工许可",
        "construction permit",
        "项目备案",
        "project filing",
        "审批",
        "approval",
    ),
    "tj-ecology": ("环评", "environmental impact", "排污", "emission permit"),
    "tj-transport": (
        "班车",
        "commuter bus",
        "城际",
        "intercity",
        "停车",
        "parking",
        "物流许可",
        "logistics permit",
    ),
    "zgc-admin": (
        "中关村政策",
        "中关村补贴",
        "zhongguancun subsid",
        "zhongguancun polic",
        "高新技术企业",
        "high-tech enterprise",
    ),
    "zgc-ip": (
        "专利",
        "patent",
        "技术合同",
        "technology contract",
        "成果转化",
        "technology transfer",
    ),
    "park-investment": (
        "落户",
        "选址",
        "搬迁",
        "relocat",
        "site selection",
        "settling in",
        "双重政策",
        "dual polic",
    ),
    "park-innovation": (
        "中试",
        "pilot production",
        "样品",
        "sample",
        "共享实验室",
        "shared lab",
        "孵化",
        "incubat",
        "科技金融",
        "tech finance",
    ),
    "park-property": (
        "办公室",
        "office",
        "维修",
        "repair",
        "maintenance",
        "保安",
        "security guard",
        "食堂",
        "canteen",
        "宿舍",
        "dormitor",
    ),
}

UNPLACEABLE = "unplaceable"


@dataclass(frozen=True, slots=True)
class Decision:
    department: str
    reason: str
    rule_id: str | None
    matched_terms: tuple[str, ...]


def decide(ticket: TicketContent) -> Decision:
    text = f"{ticket.subject}\n{ticket.description}".lower()
    best: tuple[str, tuple[str, ...]] | None = None
    for department, terms in KEYWORDS.items():
        matched = tuple(term for term in terms if term in text)
        if matched and (best is None or len(matched) > len(best[1])):
            best = (department, matched)
    if best is None:
        return Decision(TRIAGE, UNPLACEABLE, None, ())
    department, matched = best
    return Decision(department, f"matched {', '.join(matched)}", f"keywords:{department}", matched)


def _check_table() -> None:
    for code in KEYWORDS:
        if code not in DEPARTMENTS or code == SUPERVISION:
            raise ValueError(f"routing table names {code!r}, which is not a routing target")


_check_table()
