"""An upload whose content is indexed already reuses that embedding, but only one made from
as many frames: an index from before animations were embedded from several frames
(schema 3) holds a GIF's first frame alone, and reusing it would leave every later post of
that GIF unfindable by what it shows later. The tiny search model, a real index."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.images.decode import ImageLimits
from bot.images.loader import ImageLoader
from bot.index.embedding import embed_frames, embed_uploads
from bot.index.image_index import ImageIndex
from bot.index.refs import ImageRef
from bot.vision.service import VisionService
from tests.animations import gif_with_a_blank_start


def ref(message_id: int) -> ImageRef:
    return ImageRef(1, 41, message_id, message_id + 1, 7, time.time())


async def test_an_animation_stored_from_one_frame_is_embedded_again_from_its_frames(
    service: VisionService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = await ImageIndex.open(
        tmp_path / "index.sqlite3", "tiny", service.workers, per_channel=100, retention_days=0
    )
    try:
        gif, _, _ = gif_with_a_blank_start()
        decoded = await ImageLoader(service.workers, ImageLimits()).decode(gif)
        assert len(decoded.frames) == 4
        (first_only,) = await embed_frames(service, [decoded.frames[:1]])
        old, new = ref(100), ref(200)
        await index.add_pending([old, new])
        assert await index.settle([(old, decoded.digest, first_only)], []) == 1

        (ready,) = await embed_uploads(index, service, [new], {new.key: decoded})
        assert ready[2].shape[0] == 4
        assert await index.settle([ready], []) == 1
        # From then on the frames' embedding is the one reused, not the older single frame.
        embedded = []
        monkeypatch.setattr(service, "embed_images", lambda *a, **k: embedded.append(a))
        (again,) = await embed_uploads(index, service, [ref(300)], {ref(300).key: decoded})
        assert again[2].shape[0] == 4 and embedded == []
    finally:
        await index.close()
