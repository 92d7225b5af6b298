"""An image's embedding: one row per frame it is embedded from (bot.images.frames).

The vision service embeds single pictures; here each image's frames go in one call with
everyone else's, and come back as that image's (frames, dim) matrix; and uploads whose content
is indexed already are not embedded again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from bot.images.loader import Decoded
from bot.index.image_index import ImageIndex
from bot.index.refs import ImageRef, Key
from bot.vision.service import VisionService


async def embed_frames(
    vision: VisionService, images: Sequence[Sequence[Image.Image]], *, background: bool = False
) -> list[np.ndarray]:
    """For each image (its frames), its (frames, dim) embedding."""
    rows = await vision.embed_images([frame for frames in images for frame in frames],
                                     background=background)  # fmt: skip
    ends = np.cumsum([len(frames) for frames in images])
    return [rows[end - len(frames) : end] for frames, end in zip(images, ends, strict=True)]


async def embed_uploads(
    index: ImageIndex, vision: VisionService, refs: list[ImageRef], fetched: dict[Key, Decoded]
) -> list[tuple[ImageRef, str, np.ndarray]]:
    """Each ref with its content hash and embedding (one row per frame): an image whose content
    is indexed already from as many frames gets that embedding, and identical images in `refs`
    are embedded once."""
    ready: list[tuple[ImageRef, str, np.ndarray]] = []
    to_embed: dict[str, list[ImageRef]] = {}
    frames: dict[str, tuple[Image.Image, ...]] = {}
    # One question for the batch, not one per image: with a model as fast as a GPU's (a
    # sleep, 2-core AMD Zen 5) the 16 round trips to the db thread took 1.2-1.3 of a photo's
    # 4.6-5.5 ms, one question 0.14-0.2 (the whole was bound by decoding and pixels either way).
    digests = {fetched[ref.key].digest for ref in refs}
    known = await index.embeddings_for_hashes(digests) if digests else {}
    for ref in refs:
        digest = fetched[ref.key].digest
        if digest in to_embed:
            to_embed[digest].append(ref)
        elif digest in known and len(known[digest]) == len(fetched[ref.key].frames):
            # (An index from before schema 3 holds an animation's first frame alone.)
            ready.append((ref, digest, known[digest]))
        else:
            to_embed[digest] = [ref]
            frames[digest] = fetched[ref.key].frames
    if to_embed:
        vectors = await embed_frames(vision, list(frames.values()), background=True)
        for (digest, twins), vector in zip(to_embed.items(), vectors, strict=True):
            ready.extend((ref, digest, vector) for ref in twins)
    return ready
