import pytest

from services.routing.domain import UNPLACEABLE, decide
from shared.departments import TRIAGE
from shared.events import Language
from tests.unit.samples import sample_content


@pytest.mark.parametrize(
    ("subject", "description", "department"),
    [
        ("孩子学籍", "员工孩子的北京学籍如何保留？", "bj-education"),
        (
            "School place",
            "We need a kindergarten place in Tianjin for an engineer's son.",
            "tj-education",
        ),
        ("北京社保", "员工想继续缴纳北京社保，可以吗？", "bj-hrss"),
        ("VAT 发票", "How do we issue a VAT invoice (增值税发票) here?", "tj-tax"),
        ("停电", "园区B座今天停电，生产线停了", "tj-utilities"),
        ("Patent", "We want to file a patent for our new sensor", "zgc-ip"),
        ("搬迁", "公司计划从北京搬迁到滨海，需要选址", "park-investment"),
        ("中试", "样品需要做中试生产", "park-innovation"),
    ],
)
def test_tickets_in_chinese_english_and_mixed_go_to_their_department(
    subject: str, description: str, department: str
) -> None:
    decision = decide(
        sample_content(subject=subject, description=description, language=Language.EN)
    )

    assert decision.department == department
    assert decision.matched_terms
    assert decision.rule_id is not None


def test_a_ticket_nobody_can_place_goes_to_triage() -> None:
    decision = decide(sample_content(subject="你好", description="有个问题想咨询"))

    assert decision.department == TRIAGE
    assert decision.reason == UNPLACEABLE
    assert decision.matched_terms == ()
