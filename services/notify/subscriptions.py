"""Who wants which channels: a department's webhook (URL, secret) and channels, an enterprise's
channels, registered by an administrator through notify's API.

A webhook secret is needed in clear to sign each delivery, so it is stored sealed (AES-256-GCM,
under a key derived from notify's own secret) and no API ever returns it: what an operator or a
stolen database dump can read is the URL and that a secret is set.
"""

import base64
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.events import Channel

DEPARTMENT_CHANNELS = frozenset({Channel.INBOX, Channel.WEBHOOK})
ENTERPRISE_CHANNELS = frozenset({Channel.INBOX, Channel.EMAIL, Channel.SMS})


@dataclass(frozen=True, slots=True)
class Subscription:
    recipient: str
    """`department:<code>` or `enterprise:<id>`."""
    channels: frozenset[Channel]
    webhook_url: str | None = None
    sealed_secret: str | None = None

    def wants(self, channel: Channel) -> bool:
        # The inbox is where every message is kept: it cannot be turned off.
        return channel is Channel.INBOX or channel in self.channels


def check(subscription: Subscription) -> None:
    """Raises ValueError, in words an administrator can act on, for a subscription that could
    not work."""
    kind, _, _ = subscription.recipient.partition(":")
    allowed = {"department": DEPARTMENT_CHANNELS, "enterprise": ENTERPRISE_CHANNELS}.get(kind)
    if allowed is None:
        raise ValueError("a recipient is department:<code> or enterprise:<id>")
    if not subscription.channels <= allowed:
        names = ", ".join(sorted(channel.value for channel in allowed))
        raise ValueError(f"a {kind} can have these channels: {names}")
    has_webhook = subscription.webhook_url is not None
    if (Channel.WEBHOOK in subscription.channels) != has_webhook:
        raise ValueError(
            "the webhook channel needs a webhook_url and a webhook_secret, and only it"
        )
    if has_webhook != (subscription.sealed_secret is not None):
        raise ValueError("a webhook_url needs its webhook_secret")


class SecretBox:
    """Seals and opens webhook secrets with AES-256-GCM; each seal has a fresh nonce, and the
    recipient is bound in as associated data, so a sealed secret moved to another recipient's
    record does not open."""

    def __init__(self, master_secret: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"parkdesk notify webhook secrets"
        ).derive(master_secret.encode())
        self._aead = AESGCM(key)

    def seal(self, recipient: str, secret: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), recipient.encode())
        return base64.b64encode(nonce + sealed).decode()

    def open(self, recipient: str, sealed: str) -> str:
        raw = base64.b64decode(sealed)
        return self._aead.decrypt(raw[:12], raw[12:], recipient.encode()).decode()
