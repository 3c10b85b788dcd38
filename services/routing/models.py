"""The router in force: its policy (reloaded from its file) and its ranker model (retrained from
corrections), swapped without a restart.

At start the newest stored model is loaded; if there is none, or it was trained on other
profiles than these, a model is trained from the profiles, the labelled tickets and the stored
corrections, and stored. A retrain trains in a child process (scikit-learn stays out of the
service, and its CPU off the event loop), then routes the labelled tickets with the new model:
if it does worse than the model in force, it is refused and the old one stays.
"""

import asyncio
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from services.routing.knowledge import Knowledge
from services.routing.learning import Labelled, accuracy, build_router, training_rows
from services.routing.ranker import ModelError, Ranker, load_ranker
from services.routing.reloader import PolicyHolder
from services.routing.router import Router
from services.routing.store import RoutingStore, StoredModel

log = logging.getLogger("parkdesk.routing.model")


class TrainingFailed(RuntimeError):
    """The training process did not give a model."""


class RetrainRunning(RuntimeError):
    """A retrain is under way already."""


class RetrainOutcome(BaseModel):
    """What a retrain did: the answer of `POST /v1/routing/retrain`."""

    accepted: bool
    trained: bool
    """False when there was nothing new to learn: no correction since the model in force, and
    the same profiles and labelled tickets."""
    version: str
    """The model trained now (the one in force, when nothing was trained)."""
    in_force: str
    """The model that routes from now on: the new one if accepted, the old one if not."""
    corrections: int
    labelled_accuracy: float
    previous_accuracy: float
    reason: str


class RouterHolder:
    def __init__(
        self,
        policies: PolicyHolder,
        knowledge: Knowledge,
        labelled: list[Labelled],
        labelled_digest: str,
        store: RoutingStore,
        threshold: float,
        now: Callable[[], datetime],
        tolerance: float = 0.0,
        cache: Path | None = None,
    ) -> None:
        self._policies = policies
        self._knowledge = knowledge
        self._labelled = labelled
        self._labelled_digest = labelled_digest
        self._store = store
        self._threshold = threshold
        self._now = now
        self._tolerance = tolerance
        self._cache = cache
        self._lock = asyncio.Lock()
        self._ranker: Ranker | None = None
        self._router: Router | None = None
        self.model: StoredModel | None = None

    @property
    def router(self) -> Router:
        """The router of the policy and the model in force (rebuilt when either changed)."""
        if self._ranker is None:
            raise RuntimeError("no model loaded yet: call start() first")
        router = self._router
        if router is None or router.policy is not self._policies.policy:
            router = build_router(
                self._policies.policy, self._ranker, self._threshold, self._labelled
            )
            self._router = router
        return router

    async def start(self) -> None:
        stored = await self._store.latest_model()
        if stored is not None and stored.labelled != self._labelled_digest:
            log.info("stored model %s was trained on other labelled tickets", stored.version)
        elif stored is not None:
            try:
                self._use(load_ranker(stored.blob, self._knowledge), stored)
                log.info("model %s loaded (%d corrections)", stored.version, stored.corrections)
                return
            except ModelError as error:
                log.info("stored model not used, training a new one: %s", error)
        outcome = await self.retrain(first=True)
        log.info("model %s in force at start", outcome.in_force)

    async def retrain(self, first: bool = False) -> RetrainOutcome:
        """Trains a model on everything known now, unless nothing is new since the model in
        force (training is deterministic: it would be the same model). The first model of a
        store is not gated (there is nothing to compare with) and may come from the cache of
        models trained on the very same examples."""
        if self._lock.locked():
            raise RetrainRunning("a retrain is under way")
        async with self._lock:
            if not first and await self._nothing_new():
                assert self.model is not None
                return RetrainOutcome(
                    accepted=False,
                    trained=False,
                    version=self.model.version,
                    in_force=self.model.version,
                    corrections=self.model.corrections,
                    labelled_accuracy=self.model.labelled_accuracy,
                    previous_accuracy=self.model.labelled_accuracy,
                    reason=f"nothing new to learn since {self.model.version}",
                )
            corrections = await self._store.corrections()
            trained_at = self._now()
            stamp = f"{trained_at:%Y%m%dT%H%M%S.%f}"[:-3]
            version = f"{stamp}-{self._knowledge.digest[:6]}-c{len(corrections)}"
            request = {
                "version": version,
                "profiles": str(self._knowledge.directory),
                "rows": training_rows(self._labelled, corrections),
            }
            blob = await (self._cached(request) if first else _train_in_child(request))
            ranker = load_ranker(blob, self._knowledge)
            version = ranker.version
            candidate = build_router(self._policies.policy, ranker, self._threshold, self._labelled)
            new_accuracy = accuracy(candidate, self._labelled)
            previous = accuracy(self.router, self._labelled) if self._ranker else 0.0
            if not first and new_accuracy < previous - self._tolerance:
                reason = (
                    f"refused: {new_accuracy:.1%} on the labelled tickets, "
                    f"{previous:.1%} with {self.router.model_version}"
                )
                log.warning("model %s %s", version, reason)
                return RetrainOutcome(
                    accepted=False,
                    trained=True,
                    version=version,
                    in_force=self.router.model_version,
                    corrections=len(corrections),
                    labelled_accuracy=round(new_accuracy, 4),
                    previous_accuracy=round(previous, 4),
                    reason=reason,
                )
            stored = StoredModel(
                version=version,
                trained_at=trained_at,
                knowledge=self._knowledge.digest,
                labelled=self._labelled_digest,
                corrections=len(corrections),
                labelled_accuracy=round(new_accuracy, 4),
                blob=blob,
            )
            await self._store.save_model(stored)
            self._use(ranker, stored)
            log.info(
                "model %s in force: %.1f%% on the labelled tickets, %d corrections",
                version,
                new_accuracy * 100,
                len(corrections),
            )
            return RetrainOutcome(
                accepted=True,
                trained=True,
                version=version,
                in_force=version,
                corrections=len(corrections),
                labelled_accuracy=round(new_accuracy, 4),
                previous_accuracy=round(previous, 4),
                reason="accepted",
            )

    async def _nothing_new(self) -> bool:
        model = self.model
        return (
            model is not None
            and model.knowledge == self._knowledge.digest
            and model.labelled == self._labelled_digest
            and await self._store.count_corrections() == model.corrections
        )

    async def retrain_every(self, seconds: float) -> None:
        """The optional schedule: retrain when new corrections came since the model in force."""
        while True:
            await asyncio.sleep(seconds)
            known = self.model.corrections if self.model else 0
            try:
                if await self._store.count_corrections() > known:
                    await self.retrain()
            except Exception as error:  # the schedule goes on after any failure
                log.warning("scheduled retrain skipped: %r", error)

    async def follow(self, every_seconds: float) -> None:
        """Adopts a newer model another replica trained and stored: every replica routes with
        the model a retrain accepted, whichever replica the request reached."""
        while True:
            await asyncio.sleep(every_seconds)
            try:
                await self._adopt_newer()
            except Exception as error:  # a store outage must not end the watch
                log.warning("could not look for a newer model: %r", error)

    async def _adopt_newer(self) -> None:
        newest = await self._store.latest_model_version()
        if newest is None or (self.model is not None and newest == self.model.version):
            return
        stored = await self._store.latest_model()
        # Never back to an older one: a retrain here may have swapped a newer one in since.
        if stored is None or (self.model and stored.trained_at <= self.model.trained_at):
            return
        try:
            self._use(load_ranker(stored.blob, self._knowledge), stored)
            log.info("model %s adopted from the store", stored.version)
        except ModelError as error:
            log.warning("stored model %s not adopted: %s", stored.version, error)

    def _use(self, ranker: Ranker, stored: StoredModel) -> None:
        self._ranker, self._router, self.model = ranker, None, stored

    async def _cached(self, request: Mapping[str, object]) -> bytes:
        """A model trained before on the same profiles, examples and training code, or a new one.
        Training is deterministic, so every fresh store of a test run or a new replica need not
        spend seconds of CPU on the same model."""
        if self._cache is None:
            return await _train_in_child(request)
        key = hashlib.sha256(
            json.dumps([request["rows"], self._knowledge.digest, _code_digest()]).encode()
        ).hexdigest()[:32]
        path = self._cache / f"{key}.npz"
        if path.exists():
            return path.read_bytes()
        blob = await _train_in_child(request)
        self._cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(blob)
        partial.replace(path)  # whole or not at all, also with several replicas at once
        return blob


def _code_digest() -> str:
    """The training code's own digest: a change to how models are made invalidates the cache."""
    digest = hashlib.sha256()
    for module in ("features.py", "ranker.py", "training.py"):
        digest.update((Path(__file__).with_name(module)).read_bytes())
    return digest.hexdigest()


async def _train_in_child(request: Mapping[str, object]) -> bytes:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.routing.training",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    blob, errors = await child.communicate(json.dumps(request).encode())
    if child.returncode != 0:
        tail = errors.decode(errors="replace").strip().splitlines()[-3:]
        raise TrainingFailed(f"training exited {child.returncode}: {' | '.join(tail)}")
    return blob
