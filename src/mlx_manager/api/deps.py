"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from mlx_manager.engine.engine import Engine


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


EngineDep = Annotated[Engine, Depends(get_engine)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
