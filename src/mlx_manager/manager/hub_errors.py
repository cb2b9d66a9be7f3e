"""What Hugging Face search and downloads refuse, as RFC 7807 problems (the API layer renders them; `code` names
the problem for programs).

A subclass of the manager's `ManagerError`, so a shared problem+json handler for the manager covers it too; the
extra members (the numbers of a disk-full refusal, the id of a conflicting download) travel in `extra`."""

from __future__ import annotations

from typing import Any

from mlx_manager.manager.errors import ManagerError


class HubError(ManagerError):
    def __init__(self, status: int, code: str, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail, code=code)
        self.status = status  # per instance: one class covers 400 to 507
        self.detail = detail
        self.extra = extra or {}


def hub_offline() -> HubError:
    return HubError(
        503,
        "hub_offline",
        "Search, model details and downloads need the Hugging Face Hub, but HF_HUB_OFFLINE is set for this server."
        " Unset it (or set HF_HUB_OFFLINE=0) and restart; models already in the cache keep working.",
    )


def hub_unreachable(endpoint: str, reason: str) -> HubError:
    return HubError(502, "hub_unreachable", f"{endpoint}: {reason}")


def repo_not_found(repo_id: str) -> HubError:
    return HubError(
        404,
        "repo_not_found",
        f"No model repository '{repo_id}' on the hub (or it is private and no valid HF_TOKEN is set).",
    )


def revision_not_found(repo_id: str, revision: str) -> HubError:
    return HubError(404, "revision_not_found", f"'{repo_id}' has no revision '{revision}'.")


def gated_repo(repo_id: str) -> HubError:
    return HubError(
        403,
        "gated_repo",
        f"'{repo_id}' is gated: accept its terms on the hub and set HF_TOKEN for this server.",
    )


def invalid_repo_id(repo_id: str, reason: str) -> HubError:
    return HubError(400, "invalid_repo_id", f"'{repo_id}': {reason}")


def invalid_revision(revision: str) -> HubError:
    return HubError(400, "invalid_revision", f"'{revision}' is not a valid branch, tag or commit name.")


def download_not_found(download_id: str) -> HubError:
    return HubError(404, "download_not_found", f"No download with id '{download_id}'.")


def invalid_state(download_id: str, status: str, action: str) -> HubError:
    return HubError(
        409,
        "invalid_download_state",
        f"Download '{download_id}' is {status}: it cannot be {action}.",
        extra={"download_id": download_id, "download_status": status},
    )
