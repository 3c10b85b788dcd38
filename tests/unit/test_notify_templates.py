"""notify's wording: every shipped template renders, and a broken one stops notify at start."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.notify.domain import TEMPLATE_SAMPLES, check_templates
from services.notify.templates import SHIPPED, Templates
from shared.events import Language


def test_every_shipped_message_renders_in_both_languages() -> None:
    templates = Templates.load()
    check_templates(templates)

    subject, body = templates.render(
        "escalated",
        Language.EN,
        {"ticket_id": "T-1", "department": "tj-tax", "due": datetime(2026, 11, 30, 8, tzinfo=UTC)},
    )
    assert "(Binhai New Area Tax Bureau)" in subject  # the department by its English name
    assert "2026-11-30 16:00" in body  # in Asia/Shanghai time


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("{{ ticket_id }", "message template receipt.en"),  # does not compile
        ("{{ ticket_number }}", "message template receipt.en fails"),  # not a value it gets
        ("{{ due | shout }}", "message template receipt.en"),  # no such filter
    ],
)
def test_a_broken_template_is_refused_with_its_name(
    tmp_path: Path, change: str, error: str
) -> None:
    source = SHIPPED.read_text(encoding="utf-8").replace(
        'subject = "Ticket {{ ticket_id }} received"', f'subject = "Ticket {change} received"'
    )
    broken = tmp_path / "messages.toml"
    broken.write_text(source, encoding="utf-8")

    with pytest.raises(ValueError, match=error):
        check_templates(Templates.load(broken))


def test_a_missing_language_is_refused() -> None:
    source = {kind: {"zh": {"subject": "s", "body": "b"}} for kind in TEMPLATE_SAMPLES}

    with pytest.raises(ValueError, match=r"message template \w+\.en is missing"):
        check_templates(Templates(source))
