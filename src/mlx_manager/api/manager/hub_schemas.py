"""Bodies of the Hugging Face search and download routes (/api/hub, /api/downloads). Times are Unix epoch seconds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from mlx_manager.api.schema_base import Strict

REPO_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$"
REVISION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$"
FileStatus = Literal["pending", "downloading", "verifying", "done"]
DownloadStatus = Literal["queued", "downloading", "paused", "completed", "failed", "cancelled"]


class DownloadRequest(Strict):
    repo_id: str = Field(pattern=REPO_ID_PATTERN, examples=["mlx-community/Qwen3-0.6B-4bit"])
    revision: str = Field(default="main", pattern=REVISION_PATTERN, description="Branch, tag or commit.")
    allow_patterns: list[str] | None = Field(
        default=None, max_length=64, description="Glob patterns (fnmatch) of the files to fetch; all when omitted."
    )


class FileProgress(BaseModel):
    path: str
    size: int
    downloaded_bytes: int
    status: FileStatus
    speed_bytes_per_second: float
    eta_seconds: float | None


class DownloadOut(BaseModel):
    id: str
    repo_id: str
    revision: str
    commit: str
    status: DownloadStatus
    error: str | None
    total_bytes: int
    downloaded_bytes: int
    progress: float = Field(description="downloaded_bytes / total_bytes, 0 to 1.")
    speed_bytes_per_second: float
    eta_seconds: float | None = Field(description="None while the speed is unknown (paused, just started).")
    files: list[FileProgress]
    created_at: float
    updated_at: float


class DownloadList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DownloadOut]


class HubModel(BaseModel):
    id: str
    author: str | None
    downloads: int
    likes: int
    last_modified: str | None
    tags: list[str]
    pipeline_tag: str | None
    size_bytes: int | None = Field(description="Weights, from the hub's safetensors metadata; else the repo size.")
    size_source: Literal["safetensors", "storage", "files"] | None
    fits_in_memory: bool | None = Field(description="Weights + 10% against the memory budget and free memory.")
    downloaded: bool = Field(description="A snapshot of it is in the local Hugging Face cache.")


class HubSearch(BaseModel):
    object: Literal["list"] = "list"
    data: list[HubModel]
    memory_budget_bytes: int
    available_memory_bytes: int


class HubFile(BaseModel):
    path: str
    size: int | None
    lfs: bool
    sha256: str | None


class HubModelDetails(HubModel):
    sha: str | None
    total_file_bytes: int
    files: list[HubFile]
    card: str | None = Field(description="The model card (README.md) as text.")


class LocalModelDeleted(BaseModel):
    repo_id: str
    freed_bytes: int
