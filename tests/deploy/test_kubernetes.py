"""deploy/k8s: the base and both overlays built by kustomize, validated by kubeconform in strict
mode against the schemas of Kubernetes 1.33 (from the kubernetes-validate package) and KEDA's
ScaledObject definition, then checked for what running parkdesk safely needs."""

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shared.topics import Topics
from tests.deploy.conftest import (
    DEPLOY,
    SETTINGS,
    Tools,
    env_names,
    image_env,
    kustomize,
    must_be_set,
)

KUBERNETES_VERSION = "1.33.0"
KEDA_VERSION = "v2.18.0"
TARGETS = {
    "base": DEPLOY / "k8s" / "base",
    "dev": DEPLOY / "k8s" / "overlays" / "dev",
    "production": DEPLOY / "k8s" / "overlays" / "production",
}
TOPICS = Topics("parkdesk")
Manifest = dict[str, Any]


def standalone_schemas(target: Path, kinds: set[tuple[str, str]]) -> None:
    """kubernetes-validate's schemas refer to one shared definitions file by an absolute path,
    which kubeconform cannot follow: each needed schema gets those definitions inlined."""
    package = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    source = package / f"v{KUBERNETES_VERSION}-local-strict"
    shared_ref = '"/api/_definitions.json#/$defs/'
    definitions = json.loads(
        (source / "_definitions.json").read_text().replace(shared_ref, '"#/$defs/')
    )["$defs"]
    for kind, suffix in kinds:
        name = f"{kind.lower()}{suffix}.json"
        schema = json.loads((source / name).read_text().replace(shared_ref, '"#/$defs/'))
        schema["$defs"] = definitions
        (target / name).write_text(json.dumps(schema))


def strict(schema: Any) -> Any:
    """An object schema that lists its properties admits no others, as kubeconform's own CRD
    conversion does in strict mode."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


def crd_schemas(tools: Tools, target: Path) -> None:
    crd = yaml.safe_load(
        (tools.crds / f"keda-{KEDA_VERSION}" / "keda.sh_scaledobjects.yaml").read_text()
    )
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"].lower()
    (target / group).mkdir(parents=True)
    for version in crd["spec"]["versions"]:
        schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
        schema["properties"]["metadata"] = {"type": "object"}
        (target / group / f"{kind}_{version['name']}.json").write_text(json.dumps(strict(schema)))


def kind_suffix(api_version: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"-{group.split('.')[0]}-{version}" if group else f"-{version}"


@pytest.fixture(scope="module")
def rendered(tools: Tools) -> dict[str, list[Manifest]]:
    return {name: kustomize(tools, path) for name, path in TARGETS.items()}


@pytest.fixture(scope="module")
def schemas(
    tools: Tools, rendered: dict[str, list[Manifest]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    target = tmp_path_factory.mktemp("schemas")
    kinds = {
        (doc["kind"], kind_suffix(doc["apiVersion"]))
        for docs in rendered.values()
        for doc in docs
        if "keda.sh" not in doc["apiVersion"]
    }
    standalone_schemas(target, kinds)
    crd_schemas(tools, target)
    return target


def kubeconform(tools: Tools, schemas: Path, manifests: Path) -> tuple[int, str]:
    ran = tools.run(
        "kubeconform",
        "-strict",
        "-summary",
        "-kubernetes-version",
        KUBERNETES_VERSION,
        "-schema-location",
        f"{schemas}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        "-schema-location",
        f"{schemas}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
        str(manifests),
    )
    return ran.returncode, ran.stdout + ran.stderr


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_kubeconform_accepts_every_manifest(
    tools: Tools,
    schemas: Path,
    rendered: dict[str, list[Manifest]],
    target: str,
    tmp_path: Path,
) -> None:
    manifests = tmp_path / f"{target}.yaml"
    manifests.write_text(yaml.safe_dump_all(rendered[target]))
    code, report = kubeconform(tools, schemas, manifests)
    assert code == 0, report
    assert "Invalid: 0, Errors: 0, Skipped: 0" in report


def test_kubeconform_refuses_a_misspelt_field(
    tools: Tools, schemas: Path, rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    """The validation bites: a probe with a misspelt field, and a ScaledObject with an unknown
    one, are both invalid."""
    broken = copy.deepcopy(rendered["production"])
    deployment = next(doc for doc in broken if doc["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    scaled = next(doc for doc in broken if doc["kind"] == "ScaledObject")
    scaled["spec"]["maxReplicas"] = 6
    manifests = tmp_path / "broken.yaml"
    manifests.write_text(yaml.safe_dump_all(broken))
    code, report = kubeconform(tools, schemas, manifests)
    assert code != 0
    assert "periodSecond" in report
    assert "maxReplicas" in report


def deployments(docs: list[Manifest]) -> Iterator[Manifest]:
    return (doc for doc in docs if doc["kind"] == "Deployment")


def container(deployment: Manifest) -> Manifest:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: Manifest = containers[0]
    return found


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_service_is_probed_limited_and_unprivileged(
    rendered: dict[str, list[Manifest]], target: str
) -> None:
    for deployment in deployments(rendered[target]):
        name = deployment["metadata"]["name"]
        service = container(deployment)
        assert service["livenessProbe"]["httpGet"]["path"] == "/health", name
        assert service["readinessProbe"]["httpGet"]["path"] == "/ready", name
        assert service["startupProbe"]["httpGet"]["path"] == "/health", name
        for kind in ("requests", "limits"):
            assert set(service["resources"][kind]) == {"cpu", "memory"}, (name, kind)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert service["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert service["securityContext"]["capabilities"]["drop"] == ["ALL"], name


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_setting_a_deployment_needs_is_set_and_nothing_unknown(
    rendered: dict[str, list[Manifest]], target: str
) -> None:
    docs = rendered[target]
    config_maps = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "ConfigMap"}
    for deployment in deployments(docs):
        service = container(deployment)
        program = service["command"][0].removeprefix("parkdesk-")
        settings = SETTINGS[program]
        given = {entry["name"] for entry in service.get("env", [])}
        for source in service.get("envFrom", []):
            given |= set(config_maps[source["configMapRef"]["name"]]["data"])
        name = deployment["metadata"]["name"]
        assert given <= env_names(settings), f"{name} reads no {given - env_names(settings)}"
        missing = must_be_set(settings) - given - image_env()
        assert not missing, f"{name} lacks {sorted(missing)}"
        secrets = {
            entry["name"]
            for entry in service.get("env", [])
            if "secretKeyRef" in entry.get("valueFrom", {})
        }
        assert {"PARKDESK_AUTH_SECRET", "PARKDESK_MONGODB_URL"} <= secrets, name


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_scaled_service_has_a_disruption_budget(
    rendered: dict[str, list[Manifest]], target: str
) -> None:
    docs = rendered[target]
    budgets = [doc for doc in docs if doc["kind"] == "PodDisruptionBudget"]
    for deployment in deployments(docs):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert covering, deployment["metadata"]["name"]


def test_production_scales_consumers_on_lag_up_to_their_partitions(
    rendered: dict[str, list[Manifest]],
) -> None:
    """More consumers than partitions would stand idle: each ScaledObject stops at the
    partition count the code gives its topics, and reads the group the code names."""
    docs = rendered["production"]
    scaled = {
        doc["spec"]["scaleTargetRef"]["name"]: doc for doc in docs if doc["kind"] == "ScaledObject"
    }
    assert set(scaled) == {"routing", "sla", "notify"}
    for service, scaler in scaled.items():
        for trigger in scaler["spec"]["triggers"]:
            assert trigger["type"] == "kafka"
            metadata = trigger["metadata"]
            assert metadata["consumerGroup"] == f"parkdesk-{service}"
            assert scaler["spec"]["maxReplicaCount"] <= TOPICS.spec(metadata["topic"]).partitions
    config = next(doc for doc in docs if doc["kind"] == "ConfigMap")
    assert config["data"]["PARKDESK_TOPIC_REPLICATION_FACTOR"] == "3"
    namespace = next(doc for doc in docs if doc["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
