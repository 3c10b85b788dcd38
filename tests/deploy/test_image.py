"""The image: its Dockerfile linted by hadolint, and its install steps replayed without Docker
(the runtime lock into a fresh virtual environment, then the project) to show that the services
run on what the image holds and nothing else."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "Dockerfile"


def locked_versions(lock: Path) -> dict[str, str]:
    return dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==([^\s\\]+)", lock.read_text(), re.MULTILINE))


def test_hadolint_passes_the_dockerfile() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    linted = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_hadolint_would_catch_a_floating_base_image(tmp_path: Path) -> None:
    """The lint really runs: a Dockerfile on `latest` fails it."""
    hadolint = Path(sys.executable).parent / "hadolint"
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\n")
    linted = subprocess.run([str(hadolint), str(bad)], capture_output=True, text=True, check=False)
    assert linted.returncode != 0
    assert "DL3007" in linted.stdout


def test_the_image_is_multi_stage_non_root_and_checks_its_health() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    assert "COPY --from=build /opt/parkdesk /opt/parkdesk" in runtime
    users = re.findall(r"^USER (\S+)$", runtime, re.MULTILINE)
    assert users, "the runtime stage names its user"
    assert not users[-1].startswith(("root", "0")), users
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD .*/health", runtime, re.MULTILINE)
    assert "--require-hashes requirements-runtime.lock" in text


def test_the_runtime_lock_pins_what_the_tests_ran() -> None:
    runtime = locked_versions(ROOT / "requirements-runtime.lock")
    development = locked_versions(ROOT / "requirements.lock")
    assert "fastapi" in runtime
    assert "pytest" not in runtime, "test tools do not belong in the image"
    differing = {
        name: (version, development.get(name))
        for name, version in runtime.items()
        if development.get(name) != version
    }
    assert not differing, f"run `make lock`: {differing}"


@pytest.mark.timeout(600)
def test_the_services_run_on_what_the_image_installs(tmp_path: Path) -> None:
    """The Dockerfile's two install steps, replayed into a fresh environment: the runtime lock
    with its hashes, then the project itself (not editable, as in the image). Every entry
    point must import, and the data files the services read must be inside the package."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    assert uv is not None
    venv = tmp_path / "image-venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [
            uv,
            "pip",
            "sync",
            "-q",
            "--python",
            python,
            "--require-hashes",
            "requirements-runtime.lock",
        ],
        cwd=ROOT,
        check=True,
    )
    # Built from a copy holding only what .dockerignore lets into the image's build context.
    context = tmp_path / "context"
    context.mkdir()
    for kept in ("pyproject.toml", "shared", "services"):
        source = ROOT / kept
        if source.is_dir():
            shutil.copytree(source, context / kept, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, context / kept)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", python, "--no-deps", str(context)], check=True
    )
    probe = (
        "import services.intake.main, services.routing.main, services.sla.main, "
        "services.notify.main, shared.admin\n"
        "from services.routing.domain import POLICY_FILE\n"
        "from services.notify.templates import SHIPPED\n"
        "from shared.departments import DEPARTMENTS\n"
        "assert POLICY_FILE.is_file() and SHIPPED.is_file() and DEPARTMENTS\n"
        "import services, sys; print(services.__path__[0])\n"
    )
    ran = subprocess.run(
        [python, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert str(venv) in ran.stdout, "imported from the checkout, not from the installed package"
    for command in ("parkdesk-intake", "parkdesk-routing", "parkdesk-sla", "parkdesk-notify"):
        assert (venv / "bin" / command).exists(), command
    admin = subprocess.run(
        [str(venv / "bin" / "parkdesk-admin"), "--help"], capture_output=True, text=True
    )
    assert admin.returncode == 0, admin.stderr
    assert "provision-topics" in admin.stdout
