"""The ranker and the router on a small hand-made knowledge: trained in a second, no I/O."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pymongo.errors import ConnectionFailure

from services.routing.domain import parse_policy
from services.routing.features import features
from services.routing.knowledge import ROUTABLE, Knowledge, load_knowledge
from services.routing.learning import Correction, latest_per_ticket, training_rows
from services.routing.models import RouterHolder
from services.routing.ranker import ModelError, dump_ranker, load_ranker
from services.routing.reloader import PolicyHolder
from services.routing.router import Router, measured_rule_confidence
from services.routing.store import StoredModel
from services.routing.training import Example, train
from shared.departments import TRIAGE
from tests.unit.samples import sample_content

REMITS = {
    "tj-ecology": (["油烟", "废气", "排污", "臭味", "噪音扰民"], ["smoke", "odour", "pollution"]),
    "tj-utilities": (
        ["停电", "停水", "燃气", "暖气不热"],
        ["power cut", "water supply", "heating"],
    ),
    "tj-transport": (["公交", "班车", "停车位", "地铁"], ["bus route", "parking", "metro"]),
    "tj-hrss": (["拖欠工资", "劳动合同", "加班费"], ["unpaid wages", "labour contract"]),
    "bj-hrss": (["北京社保", "北京养老"], ["beijing pension"]),
}
POLICY = """version = "test"
[[rule]]
id = "bj-hrss.keep-beijing"
department = "bj-hrss"
any = ["北京社保"]
"""


def write_profiles(directory: Path) -> None:
    for code in ROUTABLE:
        zh, en = REMITS.get(code, ([f"{code}事项"], [f"{code} matter"]))
        quoted = ", ".join(f'"{t}"' for t in zh), ", ".join(f'"{t}"' for t in en)
        (directory / f"{code}.toml").write_text(
            f'department = "{code}"\n[[source]]\nid = "s"\ntitle = "duties"\n'
            f'citation = "test"\n[[entry]]\nmatter = "m"\nsource = "s"\n'
            f"zh = [{quoted[0]}]\nen = [{quoted[1]}]\n",
            encoding="utf-8",
        )


TICKETS = [
    Example("楼下饭店油烟太呛，晚上还有噪音", "tj-ecology"),
    Example("The factory smoke smells awful every night", "tj-ecology"),
    Example("小区又停水了，什么时候恢复", "tj-utilities"),
    Example("Power cut in building C since morning", "tj-utilities"),
    Example("班车总是迟到半小时", "tj-transport"),
    Example("No parking near the metro station", "tj-transport"),
    Example("老板拖欠工资三个月了", "tj-hrss"),
    Example("They refuse to sign a labour contract with me", "tj-hrss"),
    Example("想继续交北京社保", "bj-hrss"),
    Example("How do I keep my Beijing pension?", "bj-hrss"),
    Example("请问园区有什么活动", "park-service"),
    Example("General question about the park", "park-service"),
]


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory: pytest.TempPathFactory) -> Knowledge:
    directory = tmp_path_factory.mktemp("profiles")
    write_profiles(directory)
    return load_knowledge(directory)


@pytest.fixture(scope="module")
def router(knowledge: Knowledge) -> Router:
    ranker = train(knowledge, TICKETS, "test-1")
    policy = parse_policy(POLICY, "inline")
    return Router(policy, ranker, 0.4, measured_rule_confidence(policy, []))


def test_features_cut_chinese_into_words_and_characters_and_stem_english() -> None:
    found = features("小区油烟扰民 Polluting the smelly river")

    assert "w:油烟" in found
    assert "c:油烟" in found
    assert "c:小区油" in found
    assert "e:polluting" in found
    assert "s:pollu" in found
    assert "b:smelly river" in found
    assert "e:the" not in found
    assert "b:polluting smelly" not in found


def test_the_ranker_gives_every_department_a_probability(router: Router) -> None:
    ranked = router.ranker.rank("饭店的油烟飘进我家窗户")

    assert ranked[0].department == "tj-ecology"
    assert sorted(s.department for s in ranked) == sorted(router.ranker.departments)
    assert sum(s.probability for s in ranked) == pytest.approx(1.0, abs=1e-4)
    assert [s.probability for s in ranked] == sorted((s.probability for s in ranked), reverse=True)
    assert "油烟" in ranked[0].terms


def test_a_clear_ticket_goes_to_its_department_with_reasons(router: Router) -> None:
    decision = router.decide(sample_content("停电", "我们楼从早上开始停电，燃气也没了"))

    assert decision.department == "tj-utilities"
    assert decision.rule_id is None
    assert decision.confidence is not None
    assert decision.confidence >= router.threshold
    assert decision.matched_terms
    assert "停电" in decision.reason
    assert decision.runner_up is not None
    assert decision.runner_up.department != "tj-utilities"
    assert decision.candidates[0].department == "tj-utilities"
    assert len(decision.candidates) == 3
    assert decision.model_version == "test-1"


def test_an_unsure_ticket_goes_to_triage_with_its_candidates(router: Router) -> None:
    ticket = sample_content("问题", "公交班车上有人抽烟，油烟味很大")
    sure = router.decide(ticket).candidates[0].confidence
    strict = Router(router.policy, router.ranker, sure + 0.001, router.rule_confidence)
    decision = strict.decide(ticket)

    assert decision.department == TRIAGE
    assert "unsure" in decision.reason
    assert len(decision.candidates) == 3
    assert decision.candidates[0].confidence < strict.threshold
    assert decision.runner_up is not None
    assert decision.runner_up.department == decision.candidates[0].department


def test_a_jurisdiction_rule_overrides_the_ranker_with_its_measured_precision(
    router: Router,
) -> None:
    ticket = sample_content("社保", "员工想继续缴纳北京社保")
    measured = Router(
        router.policy,
        router.ranker,
        router.threshold,
        measured_rule_confidence(router.policy, [(ticket, "bj-hrss"), (ticket, "tj-hrss")]),
    )

    decision = measured.decide(ticket)

    assert decision.department == "bj-hrss"
    assert decision.rule_id == "bj-hrss.keep-beijing"
    # One right and one wrong of two, with the prior of nine right in ten: (1 + 9) / (2 + 10).
    assert decision.confidence == pytest.approx(10 / 12, abs=1e-4)
    assert decision.runner_up is not None
    assert decision.runner_up.department != "bj-hrss"


def test_a_model_survives_the_store_and_refuses_other_profiles(
    router: Router, knowledge: Knowledge, tmp_path: Path
) -> None:
    blob = dump_ranker(router.ranker, knowledge.digest)
    loaded = load_ranker(blob, knowledge)
    text = "班车迟到，停车位也没有"

    assert loaded.version == router.ranker.version
    # Half-precision weights may swap departments of equal, tiny probability, never the top.
    assert [s.department for s in loaded.rank(text)][:3] == [
        s.department for s in router.ranker.rank(text)
    ][:3]
    assert loaded.rank(text)[0].probability == pytest.approx(
        router.ranker.rank(text)[0].probability, abs=1e-3
    )
    other = Knowledge(knowledge.entries, "0123456789ab")
    with pytest.raises(ModelError, match="trained on profiles"):
        load_ranker(blob, other)
    with pytest.raises(ModelError, match="not a ranker model"):
        load_ranker(b"not a model", knowledge)


def test_training_is_repeatable(knowledge: Knowledge) -> None:
    first, second = (train(knowledge, TICKETS, "v") for _ in range(2))

    assert first.temperature == second.temperature
    assert np.array_equal(first.weights, second.weights)


def test_corrections_teach_the_ranker_a_new_matter(knowledge: Knowledge) -> None:
    text = "共享单车乱停乱放堵住了人行道"
    before = train(knowledge, TICKETS, "before").rank(text)[0]
    corrections = [
        Example("共享单车乱停，堵路", "tj-transport", 2.0),
        Example("共享单车太多没地方走", "tj-transport", 2.0),
        Example("shared bikes block the pavement", "tj-transport", 2.0),
    ]
    after = train(knowledge, TICKETS + corrections, "after").rank(text)[0]

    assert after.department == "tj-transport"
    assert before.department != "tj-transport" or after.probability > before.probability


def test_the_department_that_kept_a_ticket_is_its_label() -> None:
    corrections = [
        Correction("T-1", "text one", "tj-tax"),
        Correction("T-2", "text two", "tj-police"),
        Correction("T-1", "text one", "tj-market"),
    ]

    kept = latest_per_ticket(corrections)

    assert {(c.ticket_id, c.department) for c in kept} == {
        ("T-1", "tj-market"),
        ("T-2", "tj-police"),
    }
    rows = training_rows([], corrections)
    assert [row["department"] for row in rows] == ["tj-market", "tj-police"]
    assert all(row["weight"] == 2.0 for row in rows)


class FlakyModelStore:
    """The two reads `RouterHolder.follow` makes, failing first as a store outage would."""

    def __init__(self, model: StoredModel, outages: int) -> None:
        self.model, self.outages, self.asked = model, outages, 0

    async def latest_model_version(self) -> str:
        self.asked += 1
        if self.outages:
            self.outages -= 1
            raise ConnectionFailure("store away")
        return self.model.version

    async def latest_model(self) -> StoredModel:
        return self.model


async def test_replicas_follow_a_newer_stored_model_through_a_store_outage(
    knowledge: Knowledge, router: Router, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY, encoding="utf-8")
    newer = train(knowledge, TICKETS, "newer")
    stored = StoredModel(
        version="newer",
        trained_at=datetime(2026, 12, 2, tzinfo=UTC),
        knowledge=knowledge.digest,
        labelled="labelled",
        corrections=3,
        labelled_accuracy=1.0,
        blob=dump_ranker(newer, knowledge.digest),
    )
    store = FlakyModelStore(stored, outages=2)
    holder = RouterHolder(
        PolicyHolder(policy_file),
        knowledge,
        [],
        "labelled",
        store,  # type: ignore[arg-type]
        0.5,
        lambda: datetime(2026, 12, 2, tzinfo=UTC),
    )

    follower = asyncio.create_task(holder.follow(0.001))
    for _ in range(1000):
        if holder.model is not None:
            break
        await asyncio.sleep(0.001)
    follower.cancel()

    assert store.asked >= 3
    assert holder.model is not None
    assert holder.router.model_version == "newer"
