"""`make run`: the four services as separate processes on this machine; Ctrl-C stops them all.

Uses the local infrastructure unless PARKDESK_KAFKA_BOOTSTRAP_SERVERS / PARKDESK_MONGODB_URL
name other ones. Without PARKDESK_AUTH_SECRET, a development key is made once and kept in the
cache folder, so credentials stay valid across runs.
"""

import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx

from shared.auth import Role, issue_credential

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"intake": 8000, "routing": 8001, "sla": 8002, "notify": 8003}


CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "parkdesk"
DEVELOPMENT_SECRET = CACHE / "dev-auth-secret"
MODEL_CACHE = CACHE / "routing-models"


def development_secret() -> str:
    path = DEVELOPMENT_SECRET
    cache = path.parent
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def admin_command(env: dict[str, str]) -> str:
    """How to run the admin tool against this suite: with the development key, if it is the
    one in use (it is not in the shell's environment)."""
    if "PARKDESK_AUTH_SECRET" in os.environ:
        return ".venv/bin/parkdesk-admin"
    return f"PARKDESK_AUTH_SECRET=$(cat {DEVELOPMENT_SECRET}) .venv/bin/parkdesk-admin"


def main() -> int:
    env = dict(os.environ)
    env.setdefault("PARKDESK_AUTH_SECRET", development_secret())
    env.setdefault("PARKDESK_MODEL_CACHE_DIR", str(MODEL_CACHE))
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for name, port in SERVICES.items():
        service_env = {
            **env,
            "PARKDESK_HTTP_PORT": env.get(f"PARKDESK_{name.upper()}_PORT", str(port)),
        }
        processes[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", f"services.{name}"], cwd=ROOT, env=service_env
        )

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    ready = wait_ready(processes, env)
    if ready:
        credential = issue_credential(
            env["PARKDESK_AUTH_SECRET"], Role.FRONTEND, "dev-portal", timedelta(days=1)
        )
        print(
            "\nparkdesk is running.\n"
            f"  intake API:  http://127.0.0.1:{port_of(env, 'intake')}/v1/tickets\n"
            f"  API docs:    http://127.0.0.1:{port_of(env, 'intake')}/docs\n"
            f"  routing, sla, notify: ports {port_of(env, 'routing')}, {port_of(env, 'sla')}, "
            f"{port_of(env, 'notify')} (each with /docs)\n"
            f"  a frontend credential for a day:\n    export PARKDESK_TOKEN={credential}\n"
            f"  more: {admin_command(env)} issue-credential --role ROLE --subject WHO\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
    while ready and not stopping:
        exited = [name for name, process in processes.items() if process.poll() is not None]
        if exited:
            print(f"[run] {', '.join(exited)} exited; stopping the others", file=sys.stderr)
            break
        time.sleep(0.5)
    return shutdown(processes)


def port_of(env: dict[str, str], name: str) -> str:
    return env.get(f"PARKDESK_{name.upper()}_PORT", str(SERVICES[name]))


def wait_ready(processes: dict[str, subprocess.Popen[bytes]], env: dict[str, str]) -> bool:
    deadline = time.monotonic() + 60
    pending = set(processes)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            if processes[name].poll() is not None:
                print(f"[run] {name} failed to start", file=sys.stderr)
                return False
            try:
                url = f"http://127.0.0.1:{port_of(env, name)}/health"
                if httpx.get(url, timeout=1).status_code == 200:
                    pending.discard(name)
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    if pending:
        print(f"[run] not ready after 60 s: {', '.join(sorted(pending))}", file=sys.stderr)
    return not pending


def shutdown(processes: dict[str, subprocess.Popen[bytes]]) -> int:
    print("\n[run] stopping the services...", file=sys.stderr)
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    failed = 0
    for name, process in processes.items():
        try:
            code = process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
            print(f"[run] {name} did not stop in 20 s and was killed", file=sys.stderr)
        failed |= code not in (0, -signal.SIGTERM)
    print("[run] stopped (Kafka and FerretDB keep running: `make infra-down`)", file=sys.stderr)
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
