"""The one start of every generation, whichever API it came in by: the profile named as the model, the images,
then the backend (the router: this server's engine or a remote one)."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from mlx_manager.api.audio_parts import AudioLimits, attach_audio
from mlx_manager.api.errors import APIError
from mlx_manager.api.images import ImageLimits, attach_images
from mlx_manager.api.request import limits
from mlx_manager.api.request.model import EngineRequest
from mlx_manager.api.request.normalize import Limits
from mlx_manager.engine.backend import LOCAL, Backend, Run
from mlx_manager.engine.errors import ModelNotFoundError
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import Prompt
from mlx_manager.manager.profiles import ProfileLookup, resolve_target

# Background work (batch jobs, api/batches) sets this: its requests queue behind interactive ones (lower runs
# sooner; the scheduler's aging still lets them through).
PRIORITY_FLOOR: ContextVar[int] = ContextVar("priority_floor", default=0)
BACKGROUND_PRIORITY = 10


class Starter:
    def __init__(
        self,
        backend: Backend,
        profiles: ProfileLookup | None = None,
        images: ImageLimits | None = None,
        time_limits: Callable[[], limits.TimeLimits] | None = None,
        on_limit: limits.OnLimit | None = None,
        audio: AudioLimits | None = None,
    ):
        """`time_limits`: the current limits (live settings), read at each start; `on_limit` counts them."""
        self.backend = backend
        self.profiles = profiles
        self.images = images or ImageLimits()
        self.audio = audio or AudioLimits()
        self.time_limits = time_limits or limits.TimeLimits
        self.on_limit = on_limit

    async def start(self, req: EngineRequest) -> Generation:
        """Request errors are raised here, before any output."""
        target = resolve_target(self.profiles, req.model)
        prompt = target.prompt(await self._attach(target.model, req.prompt))
        params = target.params(req.params, req.explicit)
        priority = max(req.priority, PRIORITY_FLOOR.get())
        gen = await self.backend.generate(target.model, prompt, params, Run(req.n, priority, target.kv()))
        limits.apply(gen, req.endpoint, self.time_limits(), self.on_limit)
        return gen

    async def start_all(self, reqs: list[EngineRequest]) -> list[Generation]:
        """Several prompts of one request (text completions): all started, or none left running."""
        gens: list[Generation] = []
        try:
            for req in reqs:
                gens.append(await self.start(req))
        except BaseException:
            for gen in gens:
                gen.cancel()
            raise
        return gens

    async def count_tokens(self, model: str, prompt: Prompt) -> int:
        """Prompt tokens where the request would run, profile and images included."""
        target = resolve_target(self.profiles, model)
        attached = target.prompt(await self._attach(target.model, prompt))
        return await self.backend.count_tokens(target.model, attached)

    async def _attach(self, model: str, prompt: Prompt) -> Prompt:
        """The prompt's audio, then its images, decoded (or the 400 of a model that cannot take them)."""
        prompt = await attach_audio(self.backend, model, prompt, self.audio)
        return await attach_images(self.backend, model, prompt, self.images)


class Serving:
    """What every API's serving holds: the one Starter, and the server's limits on a request."""

    def __init__(self, starter: Starter, limits: Limits) -> None:
        self.starter = starter
        self.limits = limits


async def only_here(backend: Backend, model: str, what: str) -> None:
    """For requests only this server's models serve (embeddings, rerank): a model no local one is, that a routing
    rule sends elsewhere, is a 400 naming where it runs instead of a 404."""
    try:
        capabilities = await backend.capabilities(model)
    except ModelNotFoundError:
        return
    if capabilities.where != LOCAL and not capabilities.embeddings:
        raise APIError(
            400,
            f"The model '{model}' runs on {capabilities.where} by a routing rule, and those backends take chat"
            f" requests only: {what} use this server's own models.",
            param="model",
            code="not_supported_by_backend",
        )
