"""Real parts for the tests: the infrastructure to use, service processes, a webhook receiver."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from shared.settings import CommonSettings

ROOT = Path(__file__).resolve().parent.parent
MODEL_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "parkdesk" / "routing-models"
)


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap_servers: str
    mongodb_url: str


@contextmanager
def infrastructure() -> Iterator[Infra]:
    """Local Kafka and FerretDB (started by `make infra`), or external ones named in the
    environment; with PARKDESK_TEST_INFRA=testcontainers, Kafka and a real MongoDB in Docker."""
    if os.environ.get("PARKDESK_TEST_INFRA") == "testcontainers":
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with (
            KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka,
            MongoDbContainer("mongo:8.0") as mongo,
        ):
            yield Infra(kafka.get_bootstrap_server(), mongo.get_connection_url())
        return
    yield Infra(
        os.environ.get("PARKDESK_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
        os.environ.get("PARKDESK_MONGODB_URL", "mongodb://127.0.0.1:27027/"),
    )


def environment(settings: CommonSettings, auth_secret: str) -> dict[str, str]:
    """What every service process needs: where the broker and store are, its namespace, and
    the secret credentials are signed with."""
    return {
        "PARKDESK_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "PARKDESK_MONGODB_URL": settings.mongodb_url.get_secret_value(),
        "PARKDESK_NAMESPACE": settings.namespace,
        "PARKDESK_AUTH_SECRET": auth_secret,
        # Every namespace starts routing on an empty store: one trained model serves them all.
        "PARKDESK_MODEL_CACHE_DIR": str(MODEL_CACHE),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class ServiceProcess:
    """One parkdesk service as its own OS process, as `make run` starts it."""

    name: str
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = (self.log_dir / f"{self.name}.{self.starts}.log").open("wb")
        env = {**os.environ, **self.env, "PARKDESK_HTTP_PORT": str(self.port)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n" + self.log_tail()
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready in {timeout} s:\n" + self.log_tail())

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def crash_and_restart(self) -> None:
        """Killed as in a crash, then started again and ready."""
        self.kill()
        self.start()
        self.wait_ready()

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait: the graceful path."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_dir / f"{self.name}.{self.starts}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A real HTTP server on loopback that records every POST and answers with the status
    codes queued in `responses` (then 200)."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.responses: list[int] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.requests.append(
                        ReceivedRequest(self.path, dict(self.headers.items()), body)
                    )
                    status = receiver.responses.pop(0) if receiver.responses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def ticket_body(
    subject: str,
    description: str,
    language: str = "zh",
    enterprise_id: str = "E-acme",
    origin: str = "beijing",
    zhongguancun_certified: bool = True,
    category: str = "daily_life",
) -> dict[str, Any]:
    """A POST /v1/tickets body."""
    return {
        "enterprise": {
            "id": enterprise_id,
            "name": "Acme Robotics 艾克美机器人",
            "origin": origin,
            "zhongguancun_certified": zhongguancun_certified,
        },
        "contact": {
            "name": "李娜",
            "phone": "+86 138 0000 0000",
            "email": "li.na@example.com",
            "language": language,
        },
        "category": category,
        "subject": subject,
        "description": description,
    }


async def submit(
    http: httpx.AsyncClient,
    intake: ServiceProcess,
    headers: dict[str, str],
    body: dict[str, Any],
    key: str | None = None,
) -> httpx.Response:
    return await http.post(
        f"{intake.url}/v1/tickets",
        json=body,
        headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
    )


@contextmanager
def running_services(
    names: list[str], env: dict[str, str], log_dir: Path
) -> Iterator[dict[str, ServiceProcess]]:
    """The named services as real processes, ready; stopped with SIGTERM afterwards, and their
    logs printed if any of them logged a traceback."""
    processes = {name: ServiceProcess(name, env, log_dir) for name in names}
    for process in processes.values():
        process.start()
    try:
        for process in processes.values():
            process.wait_ready()
        yield processes
    finally:
        for process in processes.values():
            if process.process is not None:
                process.stop()
        for log in sorted(log_dir.glob("*.log")):
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                print(f"--- {log.name} ---\n{text[-4000:]}")
