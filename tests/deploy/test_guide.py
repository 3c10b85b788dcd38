"""The operations guide's numbers are the code's and the manifests': partitions, retention,
replication, the scaling bounds and the indexes."""

import re

from shared.departments import DEPARTMENTS
from shared.topics import DAY_MS, Topics
from tests.deploy.conftest import DEPLOY, Tools, kustomize

GUIDE = (DEPLOY / "README.md").read_text()
TOPICS = Topics("parkdesk")


def table_rows(heading: str) -> list[list[str]]:
    section = GUIDE.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_the_topic_table_is_the_code_s() -> None:
    rows = {row[0]: row for row in table_rows("Topics and partitions")}
    department_row = rows.pop(f"`parkdesk.dept.<code>` ({len(DEPARTMENTS)} departments)")
    listed = {name.strip("`"): row for name, row in rows.items()}
    specs = {spec.name: spec for spec in TOPICS.specs()}
    assert set(listed) == set(specs) - {TOPICS.department(code) for code in DEPARTMENTS}
    for name, (_, partitions, retention, _consumers) in listed.items():
        spec = specs[name]
        assert int(partitions) == spec.partitions, name
        if spec.compacted:
            assert retention.startswith("compacted"), name
        else:
            assert retention == f"{spec.retention_ms // DAY_MS} days", name
    for code in DEPARTMENTS:
        spec = specs[TOPICS.department(code)]
        assert int(department_row[1]) == spec.partitions
        assert department_row[2] == f"{spec.retention_ms // DAY_MS} days"


def test_the_scaling_table_is_the_manifests(tools: Tools) -> None:
    production = kustomize(tools, DEPLOY / "k8s" / "overlays" / "production")
    scaled = {
        doc["spec"]["scaleTargetRef"]["name"]: doc
        for doc in production
        if doc["kind"] == "ScaledObject"
    }
    rows = {row[0]: row for row in table_rows("Scaling each service")}
    for service, scaler in scaled.items():
        low, high = scaler["spec"]["minReplicaCount"], scaler["spec"]["maxReplicaCount"]
        assert f"{low}–{high}" in rows[service][1], service
        topic = scaler["spec"]["triggers"][0]["metadata"]["topic"]
        assert f"{TOPICS.spec(topic).partitions} partitions" in rows[service][2], service
    (hpa,) = [doc for doc in production if doc["kind"] == "HorizontalPodAutoscaler"]
    assert (
        f"({hpa['spec']['minReplicas']}–{hpa['spec']['maxReplicas']} in production)"
        in (rows["intake-api"][1])
    )
    target = hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]
    assert f"CPU ({target} %)" in rows["intake-api"][1]


def test_the_index_table_is_what_the_stores_create() -> None:
    """Each collection and indexed field the guide lists appears in that service's store."""
    rows = table_rows("MongoDB")
    assert len(rows) == 4
    for database, indexes in rows:
        service = database.strip("`").removeprefix("parkdesk_")
        store = (DEPLOY.parent / "services" / service / "store.py").read_text()
        listed = re.findall(r"`([a-z_<>]+)`[^:;]*: ([^;]+)", indexes)
        assert listed, database
        for collection, fields in listed:
            named = collection.split("<")[0]
            assert f'"{named}' in store, (service, collection)
            for field in re.findall(r"[a-z_]+", re.sub(r"\b(desc|unique)\b", "", fields)):
                assert f'"{field}"' in store, (service, collection, field)


def test_the_write_concern_the_guide_states_is_the_code_s() -> None:
    assert "write concern `majority`" in GUIDE
    mongo = (DEPLOY.parent / "shared" / "mongo.py").read_text()
    assert 'w="majority"' in mongo
    admin = (DEPLOY.parent / "shared" / "admin.py").read_text()
    assert "min(2, settings.topic_replication_factor)" in admin
    assert "`min.insync.replicas` 2 on every topic" in GUIDE
