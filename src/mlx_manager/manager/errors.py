"""What the manager's services refuse, with the HTTP status each refusal maps to (the API layer shapes it)."""

from __future__ import annotations


class ManagerError(Exception):
    status = 400
    headers: dict[str, str] | None = None  # sent with the error (a 429's Retry-After)

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidInput(ManagerError):
    status = 400


class AuthenticationFailed(ManagerError):
    status = 401


class PermissionDenied(ManagerError):
    status = 403


class NotFound(ManagerError):
    status = 404


class Conflict(ManagerError):
    status = 409


class WrongPassword(PermissionDenied):
    """A signed-in user's current password did not match (a 403: their session itself is fine)."""
