"""An image's embedding: one row per frame it is embedded from (bot.images.frames).

The vision service embeds single pictures; here each image's frames go in one call with
everyone else's, and come back as that image's (frames, dim) matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from bot.vision.service import VisionService


async def embed_frames(
    vision: VisionService, images: Sequence[Sequence[Image.Image]], *, background: bool = False
) -> list[np.ndarray]:
    """For each image (its frames), its (frames, dim) embedding."""
    rows = await vision.embed_images([frame for frames in images for frame in frames],
                                     background=background)  # fmt: skip
    ends = np.cumsum([len(frames) for frames in images])
    return [rows[end - len(frames) : end] for frames, end in zip(images, ends, strict=True)]
