"""Who may create accounts. The first account is the administrator: where a stranger could reach the server before
its owner (a server key is configured, or it listens beyond loopback) creating it needs the server key or a one-time
setup token printed to the log at start, as Jupyter and Grafana do. On a loopback-only server without a key,
whoever can reach it already owns it. Later registrations wait for an admin's approval, and `allow_registration`
switches them off (admins still add users with POST /api/users)."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlx_manager.config import DEFAULT_KEYS_RATE, DEFAULT_LOGIN_RATE, DEFAULT_REGISTER_RATE

if TYPE_CHECKING:
    from mlx_manager.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountConfig:
    guarded: bool = False  # the first account needs the setup token or the server key
    allow_registration: bool = True
    login_rate_limit: str = DEFAULT_LOGIN_RATE
    register_rate_limit: str = DEFAULT_REGISTER_RATE
    key_rate_limit: str = DEFAULT_KEYS_RATE

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountConfig:
        return cls(
            guarded=settings.api_key is not None or not settings.is_loopback,
            allow_registration=settings.allow_registration,
            login_rate_limit=settings.login_rate_limit,
            register_rate_limit=settings.register_rate_limit,
            key_rate_limit=settings.key_rate_limit,
        )


class SetupGate:
    """The one-time setup token: made at start while no account exists, forgotten once the first one is made."""

    def __init__(self, guarded: bool, server_key: str | None, has_users: bool) -> None:
        self.guarded = guarded
        self._server_key = server_key
        self.token: str | None = secrets.token_urlsafe(24) if guarded and not has_users else None

    def accepts(self, presented: str | None) -> bool:
        """Whether the first account may be made with what the caller presented."""
        if not self.guarded:
            return True
        if not presented:
            return False
        secrets_ok = [s for s in (self.token, self._server_key) if s]
        return any(secrets.compare_digest(presented.encode(), s.encode()) for s in secrets_ok)

    def used(self) -> None:
        self.token = None

    def announce(self) -> None:
        if self.token is None:
            return
        also = " (or the server's API key)" if self._server_key else ""
        log.warning(
            "No account exists yet. Create the administrator in the web UI or with POST /api/auth/register using"
            " this one-time setup token%s: %s",
            also,
            self.token,
        )
