"""What the checks of deploy/ share: the validators built by deploy/tools/install.sh, the
rendered manifests, and which settings each service reads."""

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from services.intake.config import IntakeSettings
from services.notify.config import NotifySettings
from services.routing.config import RoutingSettings
from services.sla.config import SlaSettings
from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

SETTINGS: dict[str, type[ServiceSettings]] = {
    "intake": IntakeSettings,
    "routing": RoutingSettings,
    "sla": SlaSettings,
    "notify": NotifySettings,
}

DEPLOYMENT_SPECIFIC = {
    "PARKDESK_KAFKA_BOOTSTRAP_SERVERS",
    "PARKDESK_MONGODB_URL",
    "PARKDESK_NAMESPACE",
    "PARKDESK_TOPIC_REPLICATION_FACTOR",
    "PARKDESK_HTTP_HOST",
    "PARKDESK_HTTP_PORT",
    "PARKDESK_METRICS_TOKEN",
}
"""Settings whose defaults suit a developer's machine only (loopback, one broker, port per
service): a deployment must set each of them."""


def env_names(settings: type[ServiceSettings]) -> set[str]:
    return {f"PARKDESK_{name.upper()}" for name in settings.model_fields}


def must_be_set(settings: type[ServiceSettings]) -> set[str]:
    """What a deployment of the service must set: what has no default, what is secret (it can
    only come from the environment), and what only suits a developer's machine."""
    required = set()
    for name, field in settings.model_fields.items():
        secret = SecretStr in getattr(field.annotation, "__args__", (field.annotation,))
        if field.is_required() or secret:
            required.add(f"PARKDESK_{name.upper()}")
    return required | DEPLOYMENT_SPECIFIC


def image_env() -> set[str]:
    """The PARKDESK_* variables the image itself sets (ENV lines of the Dockerfile)."""
    text = (DEPLOY / "Dockerfile").read_text()
    return set(re.findall(r"\b(PARKDESK_[A-Z_]+)=", text))


@dataclass(frozen=True)
class Tools:
    bin: Path
    crds: Path

    def run(self, tool: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / tool), *args], capture_output=True, text=True, check=False, **kwargs
        )


@pytest.fixture(scope="session")
def tools() -> Tools:
    cache = Path(
        os.environ.get("PARKDESK_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "parkdesk"
    )
    found = Tools(cache / "deploy-tools" / "bin", cache / "deploy-tools" / "crds")
    missing = [
        tool
        for tool in ("kustomize", "kubeconform", "promtool", "compose-config")
        if not (found.bin / tool).exists()
    ]
    if missing:
        pytest.fail(f"validators missing ({', '.join(missing)}): run `make deploy-tools` first")
    return found


def kustomize(tools: Tools, target: Path) -> list[dict[str, Any]]:
    built = tools.run("kustomize", "build", str(target))
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]
