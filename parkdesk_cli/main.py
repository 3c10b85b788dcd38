"""`parkdesk`: the command line of SREs, supervisors and integrators.

    parkdesk submit --file ticket.json          open a ticket (or many, from JSON lines)
    parkdesk follow tickets|sla|notifications|deadletter|dept:<code>
    parkdesk report [--since ISO] [--until ISO]
    parkdesk deadletters list | show OFFSET | replay OFFSET... | replay --all
    parkdesk credentials issue --role R --subject S | revoke ID
    parkdesk routing retrain | model

HTTP commands read the service URLs and a bearer credential from PARKDESK_INTAKE_URL,
PARKDESK_SLA_URL, PARKDESK_ROUTING_URL and PARKDESK_TOKEN; Kafka commands read
PARKDESK_KAFKA_BOOTSTRAP_SERVERS and PARKDESK_NAMESPACE, like the services.
"""

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.admin import issue_recorded, record_credential
from shared.auth import Role
from shared.credentials import CredentialRevoked
from shared.logs import masked
from shared.settings import CommonSettings, ServiceSettings

app = typer.Typer(
    help="The command line of SREs, supervisors and integrators. HTTP commands use "
    "PARKDESK_INTAKE_URL, PARKDESK_SLA_URL and the credential in PARKDESK_TOKEN; Kafka commands "
    "use PARKDESK_KAFKA_BOOTSTRAP_SERVERS and PARKDESK_NAMESPACE, like the services.",
    no_args_is_help=True,
    add_completion=False,
)
deadletters = typer.Typer(help="List, inspect and replay the dead letters.", no_args_is_help=True)
credentials = typer.Typer(help="Issue and revoke API credentials.", no_args_is_help=True)
app.add_typer(deadletters, name="deadletters")
routing = typer.Typer(
    help="The routing model: retrain it, see the one in force.", no_args_is_help=True
)
app.add_typer(credentials, name="credentials")
app.add_typer(routing, name="routing")

out = Console()
err = Console(stderr=True)

DLT_PREFIX = "dlt-"


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]parkdesk:[/red] {message}")
    return typer.Exit(1)


def _token() -> str:
    token = os.environ.get("PARKDESK_TOKEN")
    if not token:
        raise _fail("set PARKDESK_TOKEN to a bearer credential (parkdesk credentials issue)")
    return token


def _url(variable: str, default: str) -> str:
    return os.environ.get(variable, default).rstrip("/")


def _kafka() -> CommonSettings:
    return CommonSettings()


# --- submit -----------------------------------------------------------------------------


def _tickets(file: Path) -> Iterator[dict[str, Any]]:
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise _fail(f"{file}:{number}: not JSON: {exc}") from None
    else:
        try:
            yield json.loads(text)
        except json.JSONDecodeError as exc:
            raise _fail(f"{file}: not JSON: {exc}") from None


@app.command()
def submit(
    file: Annotated[Path, typer.Option(help="a ticket as JSON, or many as JSON lines (.jsonl)")],
) -> None:
    """Open tickets at intake, each under its own idempotency key; many show a progress bar."""
    if not file.is_file():
        raise _fail(f"{file}: no such file")
    bodies = list(_tickets(file))
    url = _url("PARKDESK_INTAKE_URL", "http://127.0.0.1:8000") + "/v1/tickets"
    headers = {"Authorization": f"Bearer {_token()}"}
    accepted: list[dict[str, Any]] = []
    refused = 0
    with httpx.Client(timeout=10) as http, _progress(len(bodies) > 1) as progress:
        task = progress.add_task("submitting", total=len(bodies))
        for body in bodies:
            answer = http.post(
                url, json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
            )
            if answer.status_code == 202:
                accepted.append(answer.json())
            else:
                refused += 1
                err.print(f"[red]{answer.status_code}[/red] {answer.text[:500]}")
            progress.advance(task)
    for ticket in accepted[:20]:
        out.print(
            f"[green]accepted[/green] {ticket['ticket_id']}, "
            f"resolution due {ticket['resolution_due_at']}"
        )
    if len(accepted) > 20:
        out.print(f"… and {len(accepted) - 20} more")
    if refused:
        raise _fail(f"{refused} of {len(bodies)} refused")


def _progress(shown: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not shown,
    )


# --- follow -----------------------------------------------------------------------------


def _topic(settings: CommonSettings, name: str) -> str:
    topics = settings.topics
    if name.startswith("dept:"):
        return topics.department(name.removeprefix("dept:"))
    named = {
        "tickets": topics.tickets,
        "sla": topics.sla,
        "notifications": topics.notifications,
        "deadletter": topics.dead_letters,
        "credentials": topics.credentials,
    }
    if name not in named:
        raise _fail(f"no topic {name!r}: one of {', '.join(named)} or dept:<code>")
    return named[name]


def describe(record: ConsumerRecord[bytes, bytes]) -> str:
    """One line for a record: when, what, which ticket, and what matters about it."""
    when = datetime.fromtimestamp(record.timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
    try:
        event = json.loads(record.value or b"")
    except ValueError:
        event = None
    if not isinstance(event, dict):
        what = f"[red]undecodable[/red] {len(record.value or b'')} bytes"
    else:
        details = {
            key: event[key]
            for key in (
                "department",
                "threshold",
                "remaining_seconds",
                "overdue_seconds",
                "channel",
                "recipient",
                "status",
            )
            if key in event
        }
        extra = " ".join(f"{key}={value}" for key, value in details.items())
        what = f"[bold]{event.get('type', '?')}[/bold] {event.get('ticket_id', '')} {extra}"
    if DLT_PREFIX + "reason" in headers:
        what += (
            f" [red]dead-lettered by {headers.get('dlt-service')}: {headers['dlt-reason']}[/red]"
        )
    return masked(f"{when} {record.partition}@{record.offset} {what}")


@app.command()
def follow(
    topic: Annotated[
        str, typer.Argument(help="tickets, sla, notifications, deadletter, dept:<code>")
    ],
    from_beginning: Annotated[bool, typer.Option(help="start at the oldest record")] = False,
    limit: Annotated[int | None, typer.Option(help="stop after this many records")] = None,
    idle_seconds: Annotated[
        float | None, typer.Option(help="stop after this long without a record")
    ] = None,
) -> None:
    """Print a topic's events as they arrive, one line each (Ctrl-C stops)."""
    settings = _kafka()
    name = _topic(settings, topic)

    async def run() -> None:
        consumer = AIOKafkaConsumer(
            name,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=False,
        )
        await consumer.start()
        shown = 0
        try:
            while limit is None or shown < limit:
                try:
                    async with asyncio.timeout(idle_seconds):
                        record = await consumer.getone()
                except TimeoutError:
                    return
                out.print(describe(record), highlight=False)
                shown += 1
        finally:
            await consumer.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


# --- report -----------------------------------------------------------------------------


@app.command()
def report(
    since: Annotated[
        datetime | None, typer.Option(help="start, with a zone (default: 30 days ago)")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="end, with a zone (default: now)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON answer")] = False,
) -> None:
    """The three rates and where tickets stand, per department, from sla."""
    params = {
        key: value.isoformat()
        for key, value in (("since", since), ("until", until))
        if value is not None
    }
    url = _url("PARKDESK_SLA_URL", "http://127.0.0.1:8002") + "/v1/reports"
    try:
        answer = httpx.get(
            url, params=params, headers={"Authorization": f"Bearer {_token()}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        raise _fail(f"sla unreachable at {url}: {exc}") from None
    if answer.status_code != 200:
        raise _fail(f"sla answered {answer.status_code}: {answer.text[:500]}")
    found = answer.json()
    if as_json:
        out.print_json(answer.text)
        return
    table = Table(title=f"SLA {found['since'][:16]} – {found['until'][:16]}")
    for column in (
        "department",
        "tickets",
        "response",
        "resolution",
        "satisfied",
        "open",
        "at risk",
        "breached",
    ):
        table.add_column(column, justify="left" if column == "department" else "right")

    def rate(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    for name, f in found["departments"].items():
        table.add_row(
            name,
            str(f["tickets"]),
            rate(f["response_rate"]),
            rate(f["resolution_rate"]),
            rate(f["satisfaction_rate"]),
            str(f["open"]),
            str(f["at_risk"]),
            str(f["breached"]),
        )
    out.print(table)


# --- routing ----------------------------------------------------------------------------


def _routing(method: str, path: str, timeout: float) -> dict[str, Any]:
    url = _url("PARKDESK_ROUTING_URL", "http://127.0.0.1:8001") + path
    try:
        answer = httpx.request(
            method, url, headers={"Authorization": f"Bearer {_token()}"}, timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise _fail(f"routing unreachable at {url}: {exc}") from None
    if answer.status_code != 200:
        raise _fail(f"routing answered {answer.status_code}: {answer.text[:500]}")
    found: dict[str, Any] = answer.json()
    return found


@routing.command("retrain")
def retrain(
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON answer")] = False,
) -> None:
    """Train a new model from the profiles, the labelled tickets and every correction (an
    admin credential); it routes from now on unless it does worse on the labelled tickets."""
    found = _routing("POST", "/v1/routing/retrain", timeout=600)
    if as_json:
        out.print_json(json.dumps(found))
        return
    if not found["trained"]:
        out.print(f"{found['reason']}: {found['in_force']} stays in force")
        return
    verdict = "[green]accepted[/green]" if found["accepted"] else "[red]refused[/red]"
    out.print(
        f"model {found['version']} {verdict}: {found['labelled_accuracy']:.1%} on the labelled "
        f"tickets (was {found['previous_accuracy']:.1%}), {found['corrections']} corrections"
    )
    out.print(f"in force: {found['in_force']}")
    if not found["accepted"]:
        raise typer.Exit(2)


@routing.command("model")
def routing_model() -> None:
    """The model in force: version, when it was trained, on how many corrections."""
    out.print_json(json.dumps(_routing("GET", "/v1/routing/model", timeout=30)))


# --- dead letters -----------------------------------------------------------------------


async def read_to_end(settings: CommonSettings, *topics: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of the topics, oldest first per partition, up to their ends as they were
    when asked."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        missing = set(topics) - await consumer.topics()
        if missing:
            named = ", ".join(sorted(missing))
            raise _fail(f"no topic {named}: provision the namespace's topics first")
        # The layout is the code's (shared/topics.py), which provisioning applies.
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in range(settings.topics.spec(topic).partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []

        async def behind() -> bool:
            for tp, end in ends.items():
                if await consumer.position(tp) < end:
                    return True
            return False

        while await behind():
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(
                    r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)]
                )
        return records
    finally:
        await consumer.stop()


@deadletters.command("list")
def list_dead_letters(
    service: Annotated[str | None, typer.Option(help="only those of this service")] = None,
) -> None:
    """Every dead letter: where it came from, who gave up on it, and why."""
    settings = _kafka()
    records = asyncio.run(read_to_end(settings, settings.topics.dead_letters))
    table = Table(title=f"{settings.topics.dead_letters}: {len(records)} dead letters")
    for column in ("offset", "time", "service", "source", "type", "reason"):
        table.add_column(column)
    for record in records:
        headers = {n: v.decode(errors="replace") for n, v in record.headers or ()}
        if service and headers.get("dlt-service") != service:
            continue
        source = headers.get("dlt-source-topic", "")
        if source:
            source += f"[{headers.get('dlt-source-partition')}]@{headers.get('dlt-source-offset')}"
        table.add_row(
            str(record.offset),
            datetime.fromtimestamp(record.timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M"),
            headers.get("dlt-service", ""),
            source,
            headers.get("event-type", ""),
            masked(headers.get("dlt-reason", "")),
        )
    out.print(table)


@deadletters.command("show")
def show_dead_letter(offset: int) -> None:
    """One dead letter in full: its headers and its original bytes."""
    settings = _kafka()
    records = asyncio.run(read_to_end(settings, settings.topics.dead_letters))
    record = next((r for r in records if r.offset == offset), None)
    if record is None:
        raise _fail(f"no dead letter at offset {offset}")
    for name, value in record.headers or ():
        out.print(f"[bold]{name}[/bold]: {masked(value.decode(errors='replace'))}", highlight=False)
    try:
        out.print_json(masked(json.dumps(json.loads(record.value or b""), ensure_ascii=False)))
    except ValueError:
        out.print(repr(record.value))


@deadletters.command("replay")
def replay_dead_letters(
    offsets: Annotated[list[int] | None, typer.Argument(help="offsets to replay")] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="every dead letter with a source")
    ] = False,
) -> None:
    """Put dead letters back on the topic they came from, with their original key and headers,
    once their cause is fixed. Consumers are idempotent: a replay of something already
    handled changes nothing."""
    if not offsets and not replay_all:
        raise _fail("name the offsets to replay, or --all")
    settings = _kafka()
    records = asyncio.run(read_to_end(settings, settings.topics.dead_letters))
    chosen = [
        r
        for r in records
        if (replay_all or r.offset in (offsets or []))
        and any(name == "dlt-source-topic" for name, _ in r.headers or ())
    ]
    missing = set(offsets or []) - {r.offset for r in chosen}
    if missing:
        raise _fail(f"no replayable dead letter at {sorted(missing)}")

    async def replay() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
        )
        await producer.start()
        try:
            with _progress(len(chosen) > 1) as progress:
                task = progress.add_task("replaying", total=len(chosen))
                for record in chosen:
                    headers = dict(record.headers or ())
                    source = headers["dlt-source-topic"].decode()
                    kept = [(n, v) for n, v in record.headers or () if not n.startswith(DLT_PREFIX)]
                    kept.append(("dlt-replayed-from", str(record.offset).encode()))
                    await producer.send_and_wait(source, record.value, key=record.key, headers=kept)
                    progress.advance(task)
        finally:
            await producer.stop()

    asyncio.run(replay())
    out.print(f"replayed {len(chosen)} dead letter{'s' if len(chosen) != 1 else ''}")


# --- credentials ------------------------------------------------------------------------


@credentials.command("issue")
def issue(
    role: Annotated[Role, typer.Option(help="what the holder may do")],
    subject: Annotated[str, typer.Option(help="enterprise id, department code or name")],
    days: Annotated[float, typer.Option(help="validity in days")] = 30,
) -> None:
    """Print a new bearer credential, recorded on the credentials topic (its hash only)."""
    # ServiceSettings: the signing key PARKDESK_AUTH_SECRET is needed.
    token, issued = asyncio.run(
        issue_recorded(ServiceSettings(), role, subject, timedelta(days=days))
    )
    err.print(
        f"credential {issued.credential_id} for {role.value} {subject}, valid until "
        f"{issued.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    sys.stdout.write(token + "\n")


@credentials.command("revoke")
def revoke(
    credential_id: str,
    reason: Annotated[
        str, typer.Option(help="why, kept with the revocation")
    ] = "revoked by an operator",
) -> None:
    """Revoke a credential: every service refuses it from the moment it reads the revocation."""
    revocation = CredentialRevoked(credential_id=credential_id, reason=reason)
    asyncio.run(record_credential(_kafka(), revocation))
    out.print(f"credential {credential_id} revoked")


def main() -> None:
    app()
