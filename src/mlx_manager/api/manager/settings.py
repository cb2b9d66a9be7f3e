"""/api/settings (admins): pool limits, preloaded models and auth/audit flags, applied to the running server
at once and kept for the next start."""

from __future__ import annotations

from fastapi import APIRouter

from mlx_manager.api.manager.deps import ManagerDep
from mlx_manager.api.manager.schemas import SettingsPublic, SettingsUpdate, problems
from mlx_manager.api.security import Admin
from mlx_manager.manager.settings_store import ManagedSettings

router = APIRouter(prefix="/settings", tags=["settings"], responses=problems(401, 403))


def public(manager_settings: ManagedSettings, overridden: list[str]) -> SettingsPublic:
    return SettingsPublic(**manager_settings.model_dump(), overridden=overridden)


@router.get("")
def get_settings(_: Admin, manager: ManagerDep) -> SettingsPublic:
    return public(manager.settings.current, manager.settings.overridden)


@router.patch("", responses=problems(400))
async def update_settings(body: SettingsUpdate, _: Admin, manager: ManagerDep) -> SettingsPublic:
    """Change the settings sent (null: back to the configured value). Lower limits unload idle models now;
    models added to `preload` load and are pinned in the background."""
    values = await manager.update_settings(body.model_dump(exclude_unset=True))
    return public(values, manager.settings.overridden)
