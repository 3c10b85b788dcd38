import hashlib
from datetime import timedelta
from typing import Annotated

import jwt
import pytest
from fastapi import Depends, FastAPI
from httpx import ASGITransport, AsyncClient

from shared.auth import (
    Authenticator,
    Limit,
    Principal,
    RateLimiter,
    Role,
    issue_credential,
    verify_credential,
)
from shared.credentials import issue

SECRET = "s" * 40


def test_a_credential_names_its_role_and_subject() -> None:
    token = issue_credential(SECRET, Role.DEPARTMENT, "tj-tax", timedelta(minutes=5))

    principal = verify_credential(SECRET, token)

    assert principal.role is Role.DEPARTMENT
    assert principal.subject == "tj-tax"


@pytest.mark.parametrize(
    ("secret", "valid_for"),
    [("other" * 10, timedelta(minutes=5)), (SECRET, timedelta(seconds=-1))],
)
def test_forged_or_expired_credentials_are_refused(secret: str, valid_for: timedelta) -> None:
    token = issue_credential(secret, Role.ADMIN, "root", valid_for)

    with pytest.raises(jwt.InvalidTokenError):
        verify_credential(SECRET, token)


def test_enterprises_act_only_for_themselves_frontends_for_any() -> None:
    enterprise = Principal(Role.ENTERPRISE, "E-1", "c")
    frontend = Principal(Role.FRONTEND, "portal", "c")
    supervisor = Principal(Role.SUPERVISOR, "ops", "c")

    assert enterprise.may_act_for_enterprise("E-1")
    assert not enterprise.may_act_for_enterprise("E-2")
    assert frontend.may_act_for_enterprise("E-2")
    assert not supervisor.may_act_for_enterprise("E-1")
    assert supervisor.may_read_enterprise("E-1")


async def test_routes_refuse_missing_bad_and_wrong_role_credentials() -> None:
    app = FastAPI()
    auth = Authenticator(SECRET)

    @app.get("/x")
    async def x(
        principal: Annotated[Principal, Depends(auth.require(Role.SUPERVISOR))],
    ) -> str:
        return principal.subject

    supervisor = issue_credential(SECRET, Role.SUPERVISOR, "ops", timedelta(minutes=1))
    enterprise = issue_credential(SECRET, Role.ENTERPRISE, "E-1", timedelta(minutes=1))
    async with AsyncClient(transport=ASGITransport(app), base_url="http://test") as client:
        assert (await client.get("/x")).status_code == 401
        bad = {"Authorization": "Bearer nope"}
        assert (await client.get("/x", headers=bad)).status_code == 401
        wrong_role = {"Authorization": f"Bearer {enterprise}"}
        assert (await client.get("/x", headers=wrong_role)).status_code == 403
        answer = await client.get("/x", headers={"Authorization": f"Bearer {supervisor}"})
    assert answer.status_code == 200
    assert answer.json() == "ops"


def test_the_recorded_credential_is_the_token_issued() -> None:
    token, issued = issue(SECRET, Role.DEPARTMENT, "tj-tax", timedelta(days=2))

    claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="parkdesk")
    assert issued.credential_id == verify_credential(SECRET, token).credential_id
    assert int(issued.expires_at.timestamp()) == claims["exp"]
    assert issued.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert token not in issued.model_dump_json()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_credential_gets_its_burst_then_its_rate_and_others_are_untouched() -> None:
    clock = FakeClock()
    limiter = RateLimiter({role: Limit(per_second=2, burst=3) for role in Role}, clock)
    flooder = Principal(Role.ENTERPRISE, "E-1", "a" * 32)
    neighbour = Principal(Role.ENTERPRISE, "E-2", "b" * 32)

    assert [limiter.wait_seconds(flooder) for _ in range(3)] == [0, 0, 0]
    assert limiter.wait_seconds(flooder) == pytest.approx(0.5)
    assert limiter.wait_seconds(neighbour) == 0
    clock.now += 0.5
    assert limiter.wait_seconds(flooder) == 0
    assert limiter.wait_seconds(flooder) > 0
    clock.now += 60
    assert [limiter.wait_seconds(flooder) for _ in range(3)] == [0, 0, 0]  # burst, not 120


def test_a_limit_must_admit_something() -> None:
    with pytest.raises(ValueError, match="per_second"):
        Limit(per_second=0, burst=5)
    with pytest.raises(ValueError, match="burst"):
        Limit(per_second=1, burst=0)


async def test_a_flood_from_one_credential_gets_429_with_retry_after() -> None:
    app = FastAPI()
    limits = {role: Limit(per_second=0.2, burst=2) for role in Role}
    auth = Authenticator(SECRET, limiter=RateLimiter(limits))

    @app.get("/x")
    async def x(principal: Annotated[Principal, Depends(auth.require(Role.ENTERPRISE))]) -> str:
        return principal.subject

    flooder = issue_credential(SECRET, Role.ENTERPRISE, "E-1", timedelta(minutes=1))
    other = issue_credential(SECRET, Role.ENTERPRISE, "E-2", timedelta(minutes=1))
    async with AsyncClient(transport=ASGITransport(app), base_url="http://test") as client:
        answers = [
            await client.get("/x", headers={"Authorization": f"Bearer {flooder}"}) for _ in range(4)
        ]
        neighbour = await client.get("/x", headers={"Authorization": f"Bearer {other}"})

    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert answers[2].headers["Retry-After"] == "5"
    assert neighbour.status_code == 200
