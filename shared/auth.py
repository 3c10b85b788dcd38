"""API credentials: signed bearer tokens that every service verifies without a shared database.

A credential names a role and the subject it is bound to (an enterprise id, a department code),
expires, and is signed with PARKDESK_AUTH_SECRET (HS256). Each service checks the signature
and the role a route needs; scoping to the subject is the route's business.
"""

import uuid
from collections.abc import Awaitable, Callable
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


class Authenticator:
    """FastAPI dependency factory: `Depends(auth.require(Role.X, ...))` on every route.

    A credential passes if its signature holds, it has not expired, and it is not revoked."""

    def __init__(self, secret: str, is_revoked: Callable[[str], bool] = lambda _: False) -> None:
        self._secret = secret
        self._is_revoked = is_revoked

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
            return found

        return principal
