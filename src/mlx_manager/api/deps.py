"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from mlx_manager.engine.backend import Backend
from mlx_manager.engine.engine import Engine
from mlx_manager.manager.profiles import ProfileDefaults


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def get_backend(request: Request) -> Backend:
    """Where generations run: the router (this server's engine, or a remote backend by rule)."""
    backend: Backend = request.app.state.router
    return backend


BackendDep = Annotated[Backend, Depends(get_backend)]


def get_profiles(request: Request) -> list[ProfileDefaults]:
    """Every profile (listed with the models: a profile's name is usable as a model)."""
    manager = getattr(request.app.state, "manager", None)
    return manager.profiles.all() if manager is not None else []


ProfilesDep = Annotated[list[ProfileDefaults], Depends(get_profiles)]
