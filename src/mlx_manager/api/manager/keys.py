"""/api/keys: a user's API keys for the model APIs; the key itself is returned once, at creation."""

from __future__ import annotations

from fastapi import APIRouter, Request

from mlx_manager.api.manager.deps import CurrentUser, ManagerDep, SessionDep, client_address
from mlx_manager.api.manager.fields import RowId
from mlx_manager.api.manager.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, problems
from mlx_manager.db.models import ApiKey
from mlx_manager.manager import api_keys
from mlx_manager.manager.errors import PermissionDenied

router = APIRouter(prefix="/keys", tags=["api keys"], responses=problems(401))


def public(row: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(row, from_attributes=True)


@router.post("", status_code=201, responses=problems(400, 429))
def create_key(
    body: ApiKeyCreate, request: Request, user: CurrentUser, session: SessionDep, manager: ManagerDep
) -> ApiKeyCreated:
    """A new key for the caller: send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'. Store it now."""
    manager.limits.keys.hit(f"client:{client_address(request)}", f"user:{user.uid}")
    row, key = api_keys.create(session, user, body.name)
    return ApiKeyCreated(**public(row).model_dump(), key=key)


@router.get("", responses=problems(403))
def list_keys(user: CurrentUser, session: SessionDep, all: bool = False) -> list[ApiKeyPublic]:
    """The caller's keys (revoked ones too), newest first; `all=true`: everyone's (admins only)."""
    if all and not user.is_admin:
        raise PermissionDenied("Listing every user's keys needs an administrator.", "admin_required")
    return [public(row) for row in api_keys.list_keys(session, None if all else user.id)]


@router.delete("/{key_id}", responses=problems(404))
def revoke_key(key_id: RowId, user: CurrentUser, session: SessionDep) -> ApiKeyPublic:
    """Revoke one of the caller's keys (an admin: anyone's); it stops working at once."""
    return public(api_keys.revoke(session, key_id, user))
