"""The vision service: BLIP captions and CLIP embeddings for async callers.

The Discord side and the CLI both go through this class; neither touches a model. Preprocessing
runs on the prep threads, and everything that touches a model or a batch of tensors (merging a
batch, tokenising, the forward pass, decoding tokens, moving results to the CPU) on the model
thread. The event loop only queues requests and hands out the small result arrays.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from bot import wording
from bot.config import Settings
from bot.errors import UserError
from bot.memory import release_freed
from bot.tasks import retrieve, unabandoned
from bot.vision.blip import Captioner
from bot.vision.captions import CaptionStream
from bot.vision.clip import Embedder
from bot.vision.devices import (
    configure_threads,
    default_batch_max,
    default_batch_wait_ms,
    dtype_name,
    loading_onto,
    packed_weights,
    precision_name,
    resolve_device,
    resolve_dtype,
)
from bot.vision.scheduler import BACKGROUND, INTERACTIVE, Scheduler
from bot.vision.scores import TextScores
from bot.workers import Workers

log = logging.getLogger(__name__)

M = TypeVar("M")
P = TypeVar("P")
R = TypeVar("R")


class OutOfMemory(UserError, ours=True):
    def __init__(self) -> None:
        super().__init__(wording.OUT_OF_MEMORY)


@dataclass(frozen=True)
class ModelInfo:
    caption_model: str
    search_model: str
    device: str
    dtype: str


class VisionService:
    def __init__(self, settings: Settings, workers: Workers) -> None:
        self.settings = settings
        self.workers = workers
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.packed_weights = packed_weights(settings.dtype, self.device)
        configure_threads(self.device)
        wait_ms = settings.batch_wait_ms
        self.scheduler = Scheduler(
            max_batch=settings.batch_max or default_batch_max(self.device),
            wait_s=(default_batch_wait_ms(self.device) if wait_ms is None else wait_ms) / 1000,
            max_pending=settings.max_pending,
        )
        self._captions = CaptionStream(self.captioner, self._predict, self.scheduler.max_batch)
        self.scheduler.register_stepper("caption", self._captions)
        self.scheduler.register("image", self._image_batch)
        self.scheduler.register("text", self._text_batch)
        self._captioner: Captioner | None = None
        self._embedder: Embedder | None = None
        self._load_lock = asyncio.Lock()
        self._closing = False  # no load begins once close() has
        self._last_used = time.monotonic()
        self._unloader: asyncio.Task[None] | None = None

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            self.settings.caption_model,
            self.settings.search_model,
            str(self.device),
            dtype_name(self.dtype),
        )

    @property
    def loaded(self) -> bool:
        return self._captioner is not None or self._embedder is not None

    async def start(self, before_loading: Callable[[], Awaitable[None]] | None = None) -> None:
        """Finds and checks both checkpoints (config.json only: a wrong one is the admin's to
        hear), runs `before_loading`, then loads both models when PRELOAD_MODELS is on (else
        the first use does)."""
        await self.workers.run("model", Captioner.find, self.settings.caption_model)
        await self.workers.run("model", Embedder.find, self.settings.search_model)
        if before_loading is not None:
            await before_loading()
        if self.settings.preload_models:
            await self.captioner()
            await self.embedder()
        if self.settings.model_idle_unload_s > 0 and self._unloader is None:
            self._unloader = asyncio.create_task(self._unload_when_idle(), name="glimpse-unload")

    async def captioner(self) -> Captioner:
        self._last_used = time.monotonic()
        return await unabandoned(self._loaded_captioner())

    async def embedder(self) -> Embedder:
        self._last_used = time.monotonic()
        return await unabandoned(self._loaded_embedder())

    async def _loaded_captioner(self) -> Captioner:
        async with self._load_lock:
            if self._captioner is None:
                self._captioner = await self._load(
                    "caption",
                    functools.partial(
                        Captioner.load, packed=self.packed_weights, cores=self.workers.cores
                    ),
                    self.settings.caption_model,
                    self.device,
                    self.dtype,
                    self.settings.caption_max_tokens,
                )
            return self._captioner

    async def _loaded_embedder(self) -> Embedder:
        async with self._load_lock:
            if self._embedder is None:
                self._embedder = await self._load(
                    "search",
                    functools.partial(Embedder.load, packed=self.packed_weights),
                    self.settings.search_model,
                    self.device,
                    self.dtype,
                )
            return self._embedder

    async def _load(self, what: str, loader: Callable[..., M], *args: Any) -> M:
        if self._closing:  # asked for as the service closes: no one would use it
            raise asyncio.CancelledError
        started = time.perf_counter()
        with loading_onto(self.device, f"{what.upper()}_MODEL", args[0]):
            model = await self.workers.run("model", loader, *args)
        # Loading frees more than it keeps (the float32 weights that packing replaced, the
        # checkpoint's buffers); kept by malloc, they were 340 MB of a loaded service's 1.4 GB.
        await self.workers.run("model", release_freed)
        # A model brings many long-lived Python objects; left to the cyclic collector, a full
        # pass stalled the event loop for ~200 ms (measured). Frozen, they are never scanned.
        gc.freeze()
        done = (what, args[0], self.device, precision_name(self.dtype, self.packed_weights))
        log.info("%s model %s loaded on %s (%s) in %.1f s", *done, time.perf_counter() - started)
        return model

    async def ping(self) -> None:
        """Returns once the model thread is free to answer; loads nothing (for the heartbeat)."""
        await self.workers.run("model", _noop)

    async def caption(
        self, image: Image.Image, prompt: str | None = None, *, background: bool = False
    ) -> str:
        """One caption; it joins the captions being decoded at their next step, whatever
        their prompts. `background` work waits behind interactive requests."""
        captioner = await self.captioner()
        priority = BACKGROUND if background else INTERACTIVE
        self.scheduler.check_room(priority)  # refused now, before any preprocessing is spent
        inputs = self._prepare(captioner.preprocess, image, prompt)
        result: str = await self.scheduler.submit("caption", None, inputs, priority)
        return result

    async def embed_images(
        self, images: Sequence[Image.Image], *, background: bool = False
    ) -> np.ndarray:
        """One normalised row per image; `background` work waits behind interactive requests."""
        embedder = await self.embedder()
        if not images:
            return np.zeros((0, embedder.dim), np.float32)
        priority = BACKGROUND if background else INTERACTIVE
        self.scheduler.check_room(priority, len(images))
        prepared = [self._prepare(embedder.preprocess_images, [image]) for image in images]
        submitted = (self.scheduler.submit("image", None, p, priority) for p in prepared)
        return np.concatenate(await asyncio.gather(*submitted))

    async def text_scores(self) -> TextScores:
        """What a text query's score means for the search model (loads it if needed)."""
        return (await self.embedder()).scores

    async def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        embedder = await self.embedder()
        if not texts:
            return np.zeros((0, embedder.dim), np.float32)
        rows = await asyncio.gather(*(self.scheduler.submit("text", None, t) for t in texts))
        return np.concatenate(rows)

    def _prepare(self, fn: Callable[..., P], *args: Any) -> asyncio.Future[P]:
        """Preprocessing starts now, on the prep lane, while the request queues for the model."""
        future = asyncio.ensure_future(self.workers.run("prep", fn, *args))
        future.add_done_callback(retrieve)  # a request refused as Busy leaves it unread
        return future

    async def _predict(self, fn: Callable[[], R]) -> R:
        """A model call on the model lane; running out of memory is the user's to hear about
        (and to retry smaller), the cache is emptied, and the next batch proceeds."""
        try:
            return await self.workers.run("model", fn)
        except torch.OutOfMemoryError:
            log.warning("out of memory on %s; batch dropped", self.device, exc_info=True)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise OutOfMemory from None

    async def _image_batch(
        self, _key: Hashable, items: list[asyncio.Future[torch.Tensor]]
    ) -> list[np.ndarray | BaseException]:
        embedder = await self.embedder()
        pixels = await asyncio.gather(*items, return_exceptions=True)
        good = [part for part in pixels if not isinstance(part, BaseException)]
        rows: list[np.ndarray] = []
        if good:

            def run() -> np.ndarray:
                return embedder.postprocess(embedder.predict_images(torch.cat(good)))

            vectors = await self._predict(run)
            rows = [vectors[i : i + 1] for i in range(len(good))]
        return _zip_failures(pixels, rows)

    async def _text_batch(self, _key: Hashable, items: list[str]) -> list[np.ndarray]:
        embedder = await self.embedder()

        def run() -> np.ndarray:
            return embedder.postprocess(embedder.predict_texts(embedder.preprocess_texts(items)))

        vectors = await self._predict(run)
        return [vectors[i : i + 1] for i in range(len(items))]

    async def _unload_when_idle(self) -> None:
        limit = self.settings.model_idle_unload_s
        while True:
            await asyncio.sleep(min(limit, 30.0) / 2)
            idle = time.monotonic() - self._last_used
            if idle < limit or not self.loaded:
                continue
            async with self._load_lock:
                # Checked under the lock: a batch that runs or waits still needs the models.
                if not self.scheduler.idle:
                    continue
                await self._drop_models()
            log.info("models unloaded after %.0f s idle; the next request loads them", idle)

    async def _drop_models(self) -> None:
        self._captions.forget()
        self._captioner = None
        self._embedder = None
        await self.workers.run("model", self._collect)

    def _collect(self) -> None:
        """A full collection after unloading takes long enough to stall the loop (measured)."""
        gc.unfreeze()  # frozen cycles are never collected; the next load freezes again
        gc.collect()
        release_freed()  # else an unload gave back a third of the models' 1.8 GB (measured)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    async def close(self) -> None:
        """Drops the models; the worker threads belong to whoever made them."""
        self._closing = True
        if self._unloader is not None:
            self._unloader.cancel()
            await asyncio.gather(self._unloader, return_exceptions=True)
            self._unloader = None
        await self.scheduler.close()
        async with self._load_lock:
            await self._drop_models()


def _noop() -> None:
    """Runs on the model lane: answers as soon as the lane is free."""


def _zip_failures(inputs: Sequence[object], results: list[R]) -> list[R | BaseException]:
    """One result per input: the input's own failure, or the next result in order."""
    remaining = iter(results)
    return [x if isinstance(x, BaseException) else next(remaining) for x in inputs]
