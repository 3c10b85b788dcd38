"""`make chaos`, smaller: every service SIGKILLed in turn, the broker killed and restarted and
the store stopped for a while, all under a steady load; then a three-broker cluster loses one
broker for good. Every ticket intake accepted must be routed once, have every SLA milestone
fired once, and have its 17 notifications stored once and delivered."""

import random
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.scenario import Load, on_the_local_broker, on_three_brokers

pytestmark = pytest.mark.integration


def assert_clean(outcome: dict[str, Any], faults: int) -> None:
    print(outcome)  # the counts, for the log of the run
    assert len(outcome["faults"]) == faults, outcome["faults"]
    assert outcome["tickets_accepted"] > 0
    assert outcome["lost"] == 0, outcome["examples"]
    assert outcome["clocks_wrong"] == 0, outcome["examples"]
    assert outcome["notifications_missing"] == 0, outcome["examples"]
    assert outcome["notifications_duplicated"] == 0, outcome["examples"]
    assert outcome["undelivered"] == 0, outcome["examples"]


@pytest.mark.timeout(1500)
async def test_crashes_a_broker_restart_and_a_store_outage_lose_and_double_nothing(
    tmp_path: Path,
) -> None:
    seed = random.randrange(1_000_000)
    print(f"seed {seed}")
    outcome = await on_the_local_broker(Load(250, 5, 15), tmp_path, seed)
    assert_clean(outcome, faults=6)
    # Requests during the outage were refused with 503, not accepted and dropped.
    assert outcome["answers_503"] > 0


@pytest.mark.timeout(1500)
async def test_a_cluster_that_loses_a_broker_for_good_loses_no_ticket(tmp_path: Path) -> None:
    seed = random.randrange(1_000_000)
    print(f"seed {seed}")
    outcome = await on_three_brokers(Load(150, 5, 15), tmp_path, seed, tmp_path / "cluster")
    assert_clean(outcome, faults=3)
