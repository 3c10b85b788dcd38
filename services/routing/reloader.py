"""The policy in force, replaced without a restart when its file changes or on request.

A new policy is used only if it loads and validates whole; otherwise the old one stays in force
and the error (file and rule) is kept for the operator to see.
"""

import asyncio
import contextlib
import logging
from pathlib import Path

from services.routing.domain import Policy, PolicyError, load_policy

log = logging.getLogger("parkdesk.routing.policy")


class PolicyHolder:
    def __init__(self, path: Path) -> None:
        self._path = path
        self.policy = load_policy(path)  # refuse to start on a bad policy
        self._loaded_mtime = self._mtime()
        self.last_error: str | None = None

    def reload(self) -> Policy:
        """Loads the file now; raises PolicyError and keeps the policy in force if it is bad."""
        mtime = self._mtime()
        try:
            policy = load_policy(self._path)
        except PolicyError as error:
            self.last_error = str(error)
            self._loaded_mtime = mtime  # do not retry the same bad file on every tick
            log.error("policy refused, %s stays in force: %s", self.policy.version, error)
            raise
        self.policy, self._loaded_mtime, self.last_error = policy, mtime, None
        log.info(
            "policy %s loaded from %s (%d rules)", policy.version, self._path, len(policy.rules)
        )
        return policy

    async def watch(self, every_seconds: float) -> None:
        """Reloads when the file's modification time changes (an edit, a new ConfigMap)."""
        while True:
            await asyncio.sleep(every_seconds)
            if self._mtime() != self._loaded_mtime:
                with contextlib.suppress(PolicyError):
                    self.reload()

    def _mtime(self) -> float | None:
        try:
            return self._path.stat().st_mtime
        except OSError:
            return None
