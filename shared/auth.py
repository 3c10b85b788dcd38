"""API credentials: signed bearer tokens that every service verifies without a shared database.

A credential names a role and the subject it is bound to (an enterprise id, a department code),
expires, and is signed with PARKDESK_AUTH_SECRET (HS256). Each service checks the signature
and the role a route needs; scoping to the subject is the route's business.
"""

import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

ISSUER = "parkdesk"
ALGORITHM = "HS256"


class Role(StrEnum):
    ENTERPRISE = "enterprise"
    FRONTEND = "frontend"
    DEPARTMENT = "department"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    subject: str
    """Enterprise id, department code, or the name of a frontend, supervisor or admin."""
    credential_id: str

    def may_act_for_enterprise(self, enterprise_id: str) -> bool:
        if self.role is Role.ENTERPRISE:
            return self.subject == enterprise_id
        return self.role is Role.FRONTEND

    def may_read_enterprise(self, enterprise_id: str) -> bool:
        return self.may_act_for_enterprise(enterprise_id) or self.role is Role.SUPERVISOR


def issue_credential(
    secret: str,
    role: Role,
    subject: str,
    valid_for: timedelta,
    credential_id: str | None = None,
    issued_at: datetime | None = None,
) -> str:
    now = issued_at or datetime.now(UTC)
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "role": role.value,
        "jti": credential_id or uuid.uuid4().hex,
        "iat": now,
        "exp": now + valid_for,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_credential(secret: str, token: str) -> Principal:
    """Raises `jwt.InvalidTokenError` for a forged, expired or malformed credential."""
    claims = jwt.decode(
        token,
        secret,
        algorithms=[ALGORITHM],
        issuer=ISSUER,
        options={"require": ["exp", "iat", "sub", "jti", "iss"]},
    )
    try:
        role = Role(str(claims.get("role")))
    except ValueError:
        raise jwt.InvalidTokenError("unknown role") from None
    return Principal(role=role, subject=str(claims["sub"]), credential_id=str(claims["jti"]))


_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True, slots=True)
class Limit:
    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs per_second > 0 and burst >= 1")


DEFAULT_LIMITS: dict[Role, Limit] = {
    # One frontend credential carries every enterprise that uses the park's portal.
    Role.FRONTEND: Limit(per_second=2000, burst=4000),
    Role.ENTERPRISE: Limit(per_second=5, burst=20),
    Role.DEPARTMENT: Limit(per_second=20, burst=50),
    Role.SUPERVISOR: Limit(per_second=20, burst=50),
    Role.ADMIN: Limit(per_second=20, burst=50),
}


class RateLimiter:
    """A token bucket per credential: a flood from one credential is refused with 429 while
    every other credential goes on. Per process: N replicas admit up to N times the limit."""

    MAX_TRACKED = 100_000

    def __init__(
        self,
        limits: Mapping[Role, Limit] = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def wait_seconds(self, principal: "Principal") -> float:
        """Takes a token for the credential; 0 if it had one, else how long until it will."""
        limit = self._limits[principal.role]
        now = self._clock()
        tokens, then = self._buckets.get(principal.credential_id, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - then) * limit.per_second)
        if tokens >= 1:
            if len(self._buckets) >= self.MAX_TRACKED:
                self._buckets.clear()  # Forgetting buckets only ever admits more.
            self._buckets[principal.credential_id] = (tokens - 1, now)
            return 0.0
        self._buckets[principal.credential_id] = (tokens, now)
        return (1 - tokens) / limit.per_second


class Authenticator:
    """FastAPI dependency factory: `Depends(auth.require(Role.X, ...))` on every route.

    A credential passes if its signature holds, it has not expired, and it is not revoked."""

    def __init__(
        self,
        secret: str,
        is_revoked: Callable[[str], bool] = lambda _: False,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._secret = secret
        self._is_revoked = is_revoked
        self._limiter = limiter or RateLimiter()

    def require(self, *roles: Role) -> Callable[..., Awaitable[Principal]]:
        allowed = frozenset(roles)

        async def principal(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        ) -> Principal:
            if credentials is None:
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "a bearer credential is required",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            try:
                found = verify_credential(self._secret, credentials.credentials)
                if self._is_revoked(found.credential_id):
                    raise jwt.InvalidTokenError("revoked")
            except jwt.InvalidTokenError:
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "invalid or expired credential",
                    headers={"WWW-Authenticate": "Bearer"},
                ) from None
            if found.role not in allowed:
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN, f"role {found.role.value!r} may not do this"
                )
            wait = self._limiter.wait_seconds(found)
            if wait > 0:
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    "too many requests with this credential; slow down",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
            return found

        return principal
