"""Notifications delivered per second by one notify instance, by webhook to a local HTTP
receiver and by e-mail to a local SMTP server, each peer in a process of its own.

The notifications are stored first (as the consumer does), then handed to one Dispatcher with
its default concurrency, on the real store and broker; the clock runs from the first hand-over
until the last delivery is logged and announced (`notification.sent`). The inbox channel, which
only stores, is timed the same way as the floor: what the delivery log and the announcement
cost without any peer.
"""

import argparse
import asyncio
import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from bench.sla import with_namespace
from services.notify.delivery import Dispatcher, MailTarget, Retries, WebhookTarget
from services.notify.domain import contact_of, messages_for
from services.notify.store import Notification, NotifyStore
from services.notify.templates import Templates
from shared.events import (
    Channel,
    Contact,
    Enterprise,
    Event,
    Language,
    Origin,
    Priority,
    Ticket,
    TicketRouted,
    TicketSubmitted,
)
from shared.kafka import make_broker
from shared.mongo import connect
from shared.settings import CommonSettings

RESULTS = Path(__file__).with_name("results")
RECEIVER = "bench.receiver:app"
RETRIES = Retries(attempts=3, timeout_seconds=5, backoff_base_seconds=0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def peer(command: list[str], port: int) -> Iterator[None]:
    """A peer server in its own process, up until the block ends."""
    # The benchmark's own fixed commands, run with this interpreter.
    process = subprocess.Popen(  # noqa: S603
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{command[2]} did not start") from None
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(10)


def submitted(n: int) -> TicketSubmitted:
    at = datetime.now(UTC)
    ticket = Ticket(
        ticket_id=f"T-{n:026d}",
        submitted_at=at,
        resolution_due_at=at,
        enterprise=Enterprise(
            id=f"E-{n}", name="Acme", origin=Origin.BEIJING, zhongguancun_certified=False
        ),
        contact=Contact(
            name="李娜", phone="+86 138 0000 0000", email=f"c{n}@example.com", language=Language.ZH
        ),
        category="daily_life",
        subject="学籍",
        description="北京学籍如何保留？",
    )
    return TicketSubmitted(ticket_id=ticket.ticket_id, correlation_id="bench", ticket=ticket)


def routed(submission: TicketSubmitted) -> TicketRouted:
    return TicketRouted(
        ticket_id=submission.ticket_id,
        correlation_id="bench",
        department="tj-tax",
        reason="bench",
        category=submission.ticket.category,
        priority=Priority.NORMAL,
        submitted_at=submission.ticket.submitted_at,
        resolution_due_at=submission.ticket.resolution_due_at,
    )


async def deliveries_per_second(
    settings: CommonSettings,
    channel: Channel,
    count: int,
    webhook: WebhookTarget | None = None,
    mail: MailTarget | None = None,
) -> float:
    client, database = connect(settings, "notify")
    store = NotifyStore(database)
    await store.ensure_indexes()
    broker = make_broker(settings, "notify-bench")
    await broker.start()
    templates = Templates.load()
    dispatcher = Dispatcher(
        store, broker, settings.topics, webhook, mail, None, lambda: datetime.now(UTC)
    )
    try:
        pending: list[Notification] = []
        for n in range(count):
            event = submitted(n)
            await store.remember_contact(event.ticket_id, contact_of(event))
            # Departments are told by webhook: of a new ticket.
            said: Event = routed(event) if channel is Channel.WEBHOOK else event
            [message] = [
                m for m in messages_for(said, None, {channel}, templates) if m.channel is channel
            ]
            notification = await store.record(said, message, "bench:0", datetime.now(UTC))
            assert notification is not None
            pending.append(notification)
        began = time.perf_counter()
        for notification in pending:
            dispatcher.submit(notification)
        await dispatcher.drain()
        seconds = time.perf_counter() - began
        delivered = await database["outcomes"].count_documents({"status": "delivered"})
        assert delivered == count, f"{delivered} of {count} delivered"
        return count / seconds
    finally:
        await dispatcher.close()
        await broker.stop()
        await client.drop_database(settings.database_name("notify"))
        await client.close()


async def run(settings: CommonSettings, count: int) -> dict[str, float]:
    figures = {}
    figures["inbox_per_second"] = await deliveries_per_second(settings, Channel.INBOX, count)
    port = free_port()
    receiver = [sys.executable, "-m", "uvicorn", RECEIVER, "--port", str(port), "--log-level"]
    with peer([*receiver, "warning"], port):
        webhook = WebhookTarget(f"http://127.0.0.1:{port}/hook", secrets.token_hex(16), RETRIES)
        figures["webhook_per_second"] = await deliveries_per_second(
            settings, Channel.WEBHOOK, count, webhook=webhook
        )
    port = free_port()
    smtp = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c"]
    with peer([*smtp, "aiosmtpd.handlers.Sink"], port):
        mail = MailTarget("127.0.0.1", port, False, None, None, "bench@example.cn", RETRIES)
        figures["email_per_second"] = await deliveries_per_second(
            settings, Channel.EMAIL, count, mail=mail
        )
    return {name: round(value, 1) for name, value in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notifications", type=int, default=1000)
    args = parser.parse_args()
    figures = asyncio.run(with_namespace(lambda s: run(s, args.notifications)))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "notify.json"
    out.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "notifications": args.notifications,
                **figures,
            },
            indent=2,
        )
    )
    print(
        f"notify, one instance, {args.notifications:,} notifications per channel: "
        f"webhook {figures['webhook_per_second']:,}/s, e-mail {figures['email_per_second']:,}/s "
        f"(inbox, no peer: {figures['inbox_per_second']:,}/s)"
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
