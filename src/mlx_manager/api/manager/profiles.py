"""/api/profiles: a model plus generation defaults, usable as the `model` of API requests. Signed-in users read
them; admins create, change, duplicate and delete them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, Request, Response
from sqlmodel import Session

from mlx_manager.api.deps import EngineDep
from mlx_manager.api.manager.deps import CurrentUser, ManagerDep, SessionDep, write_then
from mlx_manager.api.manager.fields import RowId
from mlx_manager.api.manager.schemas import (
    ProfileCreate,
    ProfileDuplicate,
    ProfilePublic,
    ProfileUpdate,
    problems,
)
from mlx_manager.api.security import Admin
from mlx_manager.db.models import Profile
from mlx_manager.engine.engine import Engine
from mlx_manager.engine.errors import ModelNotFoundError
from mlx_manager.manager import profiles
from mlx_manager.manager.errors import Conflict, InvalidInput
from mlx_manager.manager.services import Manager
from mlx_manager.routing.router import Router

router = APIRouter(prefix="/profiles", tags=["profiles"], responses=problems(401))
T = TypeVar("T")


def public(row: Profile) -> ProfilePublic:
    return ProfilePublic.model_validate(row, from_attributes=True)


async def _not_a_model(engine: Engine, name: str | None) -> None:
    """A profile may not take a model's name: the name would then mean two things."""
    if name is not None and name in {m.id for m in await engine.list_models()}:
        raise Conflict(f"'{name}' is the name of a model; pick another name for the profile.", "name_is_a_model")


async def _known_model(request: Request, engine: Engine, model: str | None) -> None:
    """A profile runs a model this server has or a routing rule sends elsewhere; else every chat with it fails."""
    router: Router = request.app.state.router
    if model is None or router.routed(model):
        return
    try:
        await engine.resolve(model)
    except ModelNotFoundError as exc:
        raise InvalidInput(
            f"There is no model named '{model}' on this server, and no routing rule sends it elsewhere: pick one"
            " from the Models page (or add a routing rule for it).",
            "unknown_model",
        ) from exc


async def _write(manager: Manager, change: Callable[[Session], T]) -> T:
    return await write_then(manager, change, manager.profiles.reload)


@router.get("")
def list_profiles(_: CurrentUser, session: SessionDep) -> list[ProfilePublic]:
    return [public(row) for row in profiles.list_profiles(session)]


@router.post("", status_code=201, responses=problems(400, 403, 409))
async def create_profile(
    body: ProfileCreate, request: Request, _: Admin, manager: ManagerDep, engine: EngineDep
) -> ProfilePublic:
    """400 `unknown_model` when the model is neither on this server nor routed elsewhere."""
    await _not_a_model(engine, body.name)
    await _known_model(request, engine, body.model)
    return public(await _write(manager, lambda s: profiles.create(s, body.model_dump())))


@router.get("/{profile_id}", responses=problems(404))
def get_profile(profile_id: RowId, _: CurrentUser, session: SessionDep) -> ProfilePublic:
    return public(profiles.get_profile(session, profile_id))


@router.patch("/{profile_id}", responses=problems(400, 403, 404, 409))
async def update_profile(
    profile_id: RowId, body: ProfileUpdate, request: Request, _: Admin, manager: ManagerDep, engine: EngineDep
) -> ProfilePublic:
    """Change the fields sent; null clears an optional one. A new model is checked as on creation."""
    await _not_a_model(engine, body.name)
    changes = body.model_dump(exclude_unset=True)
    await _known_model(request, engine, changes.get("model"))
    return public(await _write(manager, lambda s: profiles.update(s, profile_id, changes)))


@router.delete("/{profile_id}", status_code=204, responses=problems(403, 404))
async def delete_profile(profile_id: RowId, _: Admin, manager: ManagerDep) -> Response:
    await _write(manager, lambda s: profiles.delete(s, profile_id))
    return Response(status_code=204)


@router.post("/{profile_id}/duplicate", status_code=201, responses=problems(400, 403, 404, 409))
async def duplicate_profile(
    profile_id: RowId, _: Admin, manager: ManagerDep, engine: EngineDep, body: ProfileDuplicate | None = None
) -> ProfilePublic:
    """A copy under a new name (default '<name>-copy')."""
    name = body.name if body else None
    await _not_a_model(engine, name)
    return public(await _write(manager, lambda s: profiles.duplicate(s, profile_id, name)))
