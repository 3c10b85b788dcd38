"""The brokers and the store the chaos suite breaks: the project's local infrastructure (one
Kafka node and FerretDB, started by deploy/local/infra.sh), and a three-node Kafka cluster of its
own, from the same jars, for losing a broker for good."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "deploy" / "local" / "infra.sh"
CACHE = Path(
    os.environ.get("PARKDESK_CACHE_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "parkdesk"
)
KAFKA_PORT = int(os.environ.get("PARKDESK_LOCAL_KAFKA_PORT", "19092"))
MONGODB_PORT = int(os.environ.get("PARKDESK_LOCAL_MONGODB_PORT", "27027"))
JAVA_OPTS = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # Killed, it may linger as a zombie until its parent reaps it.
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def java() -> str:
    found = shutil.which("java")
    if found is None:
        raise RuntimeError("no java on PATH: the local Kafka needs Java 17")
    return found


class LocalInfrastructure:
    """Kills and restarts what `infra.sh up` started; refuses external infrastructure."""

    def _pid(self, name: str) -> int:
        pidfile = CACHE / "state" / name / "pid"
        if os.environ.get("PARKDESK_KAFKA_BOOTSTRAP_SERVERS") or not pidfile.exists():
            raise RuntimeError(
                f"the chaos suite breaks the project's own local {name} (make infra); "
                "it cannot stop external infrastructure"
            )
        return int(pidfile.read_text())

    async def _kill(self, name: str, port: int) -> None:
        pid = self._pid(name)
        os.kill(pid, signal.SIGKILL)
        # Gone, and its port free: infra.sh refuses to start over a port that still answers.
        while alive(pid) or port_open(port):  # noqa: ASYNC110 - a pid gives no signal
            await asyncio.sleep(0.2)

    async def _up(self) -> None:
        process = await asyncio.create_subprocess_exec(
            str(INFRA), "up", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, errors = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"infra.sh up failed: {errors.decode()}")

    async def restart_kafka(self) -> None:
        await self._kill("kafka", KAFKA_PORT)
        await self._up()

    async def stop_store(self) -> None:
        await self._kill("ferretdb", MONGODB_PORT)

    async def start_store(self) -> None:
        await self._up()


def kafka_home() -> Path:
    homes = sorted(CACHE.glob("kafka-*/libs"))
    if not homes:
        raise RuntimeError("no Kafka installed in the cache: run `make infra` first")
    return homes[-1].parent


class KafkaCluster:
    """Three KRaft nodes, each broker and controller, on loopback ports of their own."""

    def __init__(self, state: Path, first_port: int = 19300, nodes: int = 3) -> None:
        self.state = state
        self.ports = [first_port + 2 * i for i in range(nodes)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def _config(self, node: int) -> Path:
        voters = ",".join(f"{n + 1}@127.0.0.1:{port + 1}" for n, port in enumerate(self.ports))
        port = self.ports[node]
        directory = self.state / f"node-{node + 1}"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={node + 1}",
                    f"controller.quorum.voters={voters}",
                    f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={directory / 'data'}",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=3",
                    "offsets.topic.num.partitions=12",
                    "transaction.state.log.replication.factor=3",
                    "transaction.state.log.min.isr=2",
                    "share.coordinator.state.topic.replication.factor=3",
                    "share.coordinator.state.topic.min.isr=2",
                    "min.insync.replicas=2",
                    "group.initial.rebalance.delay.ms=0",
                ]
            )
            + "\n"
        )
        return config

    def start(self) -> None:
        home = kafka_home()
        classpath = f"{home}/libs/*"
        for port in self.ports:
            if port_open(port) or port_open(port + 1):
                raise RuntimeError(f"port {port} or {port + 1} is taken: stop what holds it")
        shutil.rmtree(self.state, ignore_errors=True)
        cluster_id = subprocess.run(
            [java(), "-cp", classpath, "kafka.tools.StorageTool", "random-uuid"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        for node in range(len(self.ports)):
            config = self._config(node)
            subprocess.run(
                [java(), *JAVA_OPTS, "-cp", classpath, "kafka.tools.StorageTool", "format",
                 "--cluster-id", cluster_id, "--config", str(config)],
                capture_output=True,
                check=True,
            )  # fmt: skip
            log = (config.parent / "kafka.log").open("wb")
            self.processes[node] = subprocess.Popen(
                [java(), *JAVA_OPTS, "-cp", classpath, "kafka.Kafka", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while not all(port_open(port) for port in self.ports):
            for node, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"Kafka node {node + 1} exited; see {self.state}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Kafka cluster did not start in 120 s; see {self.state}")
            time.sleep(0.5)

    async def kill(self, node: int) -> None:
        process = self.processes[node]
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.state, ignore_errors=True)
