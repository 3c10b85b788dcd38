from pathlib import Path

import pytest

from services.routing.domain import (
    POLICY_FILE,
    UNPLACEABLE,
    PolicyError,
    load_policy,
    parse_policy,
    transfer_refusal,
)
from shared.departments import TRIAGE
from shared.events import Category, Language, Origin
from tests.unit.samples import sample_content

SHIPPED = load_policy()


def policy(rules: str, version: str = "test") -> str:
    return f'version = "{version}"\n{rules}'


@pytest.mark.parametrize(
    ("subject", "description", "department"),
    [
        ("孩子学籍", "员工孩子的北京学籍如何保留？", "bj-education"),
        ("北京社保", "员工想继续缴纳北京社保，可以吗？", "bj-hrss"),
        ("Pension", "Can our staff keep paying into the Beijing pension?", "bj-hrss"),
        ("户口", "员工户口想从北京迁到天津", "tj-police"),
        ("学籍", "孩子的学籍转到天津，不再保留北京的", "tj-education"),
        ("政策", "我们适用哪套双重政策？", "park-investment"),
        ("中关村补贴", "中关村的研发补贴今年怎么申报？", "zgc-admin"),
    ],
)
def test_shipped_overrides_settle_the_side_of_a_matter(
    subject: str, description: str, department: str
) -> None:
    decision = SHIPPED.decide(
        sample_content(subject=subject, description=description, language=Language.EN)
    )

    assert decision.department == department
    assert decision.matched_terms
    assert decision.rule_id is not None
    assert decision.policy_version == SHIPPED.version


@pytest.mark.parametrize(
    "description",
    [
        "小区物业不作为，楼道灯坏了三个月",  # a matter, not a side: the ranker's
        "我们想申请发明专利",
        "滨海中关村科技园的租金补贴什么时候发？",  # the Tianjin park that carries the name
        "Tianjin pension office lost my records",
    ],
)
def test_overrides_leave_matters_without_a_side_to_the_ranker(description: str) -> None:
    assert SHIPPED.decide(sample_content("问", description)).rule_id is None


def test_a_rule_settles_the_side_only_of_its_own_matters() -> None:
    rules = policy("""
[[rule]]
id = "beijing-benefits"
department = "bj-hrss"
all = ["北京"]
any = ["户口"]
matter_of = ["tj-hrss", "tj-police"]
""")
    compiled = parse_policy(rules, "inline")
    ticket = sample_content("户口", "北京户口的孩子想在生态城上小学")

    assert compiled.decide(ticket).rule_id == "beijing-benefits"
    assert compiled.decide(ticket, matter="tj-police").rule_id == "beijing-benefits"
    assert compiled.decide(ticket, matter="bj-hrss").rule_id == "beijing-benefits"
    assert compiled.decide(ticket, matter="tj-education").rule_id is None


def test_a_ticket_no_rule_matches_is_left_unplaced() -> None:
    decision = SHIPPED.decide(sample_content(subject="你好", description="我们有个问题"))

    assert decision.department == TRIAGE
    assert decision.reason == UNPLACEABLE
    assert decision.rule_id is None


def test_the_hard_pair_names_its_runner_up() -> None:
    decision = SHIPPED.decide(
        sample_content(subject="参加天津社保", description="员工放弃北京社保，改为参加天津社保")
    )

    assert decision.department == "tj-hrss"
    assert decision.runner_up is not None
    assert decision.runner_up.department == "bj-hrss"
    assert decision.runner_up.matched_terms


def test_english_terms_match_whole_words_and_stems_only() -> None:
    rules = policy("""
[[rule]]
id = "tax"
department = "tj-tax"
any = ["tax"]

[[rule]]
id = "move"
department = "park-investment"
any = ["relocat*"]
""")
    compiled = parse_policy(rules, "inline")

    assert compiled.decide(sample_content("Taxi", "the taxi rank")).department == TRIAGE
    assert compiled.decide(sample_content("Tax", "our TAX return")).department == "tj-tax"
    assert compiled.decide(sample_content("M", "relocating soon")).department == "park-investment"
    assert compiled.decide(sample_content("M", "dislocation")).department == TRIAGE


def test_chinese_terms_match_inside_unspaced_text_and_full_width_folds() -> None:
    rules = policy("""
[[rule]]
id = "ip"
department = "zgc-ip"
any = ["专利", "pct"]
""")
    compiled = parse_policy(rules, "inline")

    assert (
        compiled.decide(sample_content("问", "我们想申请发明专利的快速通道")).department == "zgc-ip"
    )
    assert compiled.decide(sample_content("Ｑ", "ＰＣＴ申请")).department == "zgc-ip"


def test_attributes_category_and_priority_decide() -> None:
    rules = policy("""
[[rule]]
id = "beijing-firms"
department = "park-investment"
priority = 70
any = ["policy"]
origins = ["beijing"]
zhongguancun_certified = true

[[rule]]
id = "anyone"
department = "park-service"
priority = 10
any = ["policy"]
categories = ["management"]
""")
    compiled = parse_policy(rules, "inline")
    content = sample_content("Q", "which policy applies?")
    other = content.model_copy(
        update={
            "enterprise": content.enterprise.model_copy(update={"origin": Origin.TIANJIN}),
            "category": Category.MANAGEMENT,
        }
    )

    assert compiled.decide(content).rule_id == "beijing-firms"
    assert compiled.decide(other).rule_id == "anyone"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ('[[rule]]\nid = "a"\ndepartment = "tj-nowhere"\nany = ["x"]', "unknown department"),
        ('[[rule]]\nid = "a"\ndepartment = "park-supervision"\nany = ["x"]', "never a routing"),
        ('[[rule]]\nid = "a"\ndepartment = "tj-tax"\nany = ["税", "  "]', "empty pattern"),
        (
            '[[rule]]\nid = "a"\ndepartment = "tj-tax"\nany = ["x"]\n'
            '[[rule]]\nid = "a"\ndepartment = "tj-tax"\nany = ["y"]',
            "duplicate rule id",
        ),
        (
            '[[rule]]\nid = "a"\ndepartment = "tj-tax"\nall = ["增值税发票"]\nnone = ["发票"]',
            "can never match",
        ),
        (
            '[[rule]]\nid = "a"\ndepartment = "tj-tax"\nany = ["tax refund"]\nnone = ["tax"]',
            "can never match",
        ),
        (
            '[[rule]]\nid = "a"\ndepartment = "tj-tax"\nany = ["x"]\ncategories = []',
            "can never match",
        ),
        ('[[rule]]\nid = "a"\ndepartment = "tj-tax"', "has no condition"),
        (
            '[[rule]]\nid = "a"\ndepartment = "tj-tax"\nany = ["x"]\nmatter_of = ["tj-nowhere"]',
            "unknown departments",
        ),
        ('[[rule]]\nid = "a"\ndepartment = "tj-tax"\nany = ["x"]\nmatter_of = []', "non-empty"),
        ('[[rule]]\nid = "a"\ndepartment = "tj-tax"\nany = ["x"]\npriorty = 5', "unknown keys"),
        (
            '[[rule]]\nid = "a"\ndepartment = "tj-tax"\nany = ["x"]\norigins = ["mars"]',
            "'origins' takes",
        ),
    ],
)
def test_a_bad_policy_is_refused_naming_file_and_rule(rules: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message) as refused:
        parse_policy(policy(rules), "policy-under-test.toml")

    assert "policy-under-test.toml" in str(refused.value)


def test_a_refusal_names_the_rule() -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy(policy('[[rule]]\nid = "bad-one"\ndepartment = "x"\nany = ["y"]'), "f.toml")

    assert refused.value.rule == "bad-one"
    assert str(refused.value).startswith("f.toml, rule 'bad-one'")


def test_unreadable_and_malformed_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("version = \n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(broken)


def test_the_shipped_policy_file_is_the_default() -> None:
    assert SHIPPED.source == str(POLICY_FILE)
    assert len(SHIPPED.rules) >= 8


@pytest.mark.parametrize(
    ("current", "target", "refused"),
    [
        ("tj-tax", "park-supervision", "escalations"),
        ("tj-tax", "tj-tax", "already"),
        ("tj-tax", "tj-nowhere", "unknown department"),
        ("tj-tax", "tj-market", None),
    ],
)
def test_transfer_refusals(current: str, target: str, refused: str | None) -> None:
    reason = transfer_refusal(current, target)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None
        assert refused in reason
