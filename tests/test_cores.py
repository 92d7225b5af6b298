"""A batch's images side by side, one per core (bot/vision/cores.py): where each item runs, on
how many torch threads, what the rest of the process keeps, and that the images' encodings and
cross-attention keys and values are the ones computed one after another, to the bit."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch

from bot.vision.blip import Captioner
from bot.vision.cores import Cores
from tests.conftest import TINY_BLIP


@pytest.fixture
def two_threads() -> Iterator[int]:
    """The calling thread with two torch threads, as the model thread of a 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


@pytest.fixture
def cores() -> Iterator[Cores]:
    workers = Cores(2)
    yield workers
    workers.shutdown()


def where(item: int) -> tuple[int, str, int, bool]:
    thread = threading.current_thread().name
    return item, thread, torch.get_num_threads(), torch.is_inference_mode_enabled()


def test_whole_rounds_run_side_by_side_on_one_thread_each_and_the_rest_here(
    cores: Cores, two_threads: int
) -> None:
    pair = threading.Barrier(2, timeout=30)  # broken unless two items run at once

    def meet(item: int) -> tuple[int, str, int, bool]:
        if item < 4:
            pair.wait()
        return where(item)

    here = threading.current_thread().name
    ran = cores.map(meet, range(5))
    assert [item for item, *_ in ran] == [0, 1, 2, 3, 4]
    for _, thread, threads, inferring in ran[:4]:
        assert thread.startswith("glimpse-core") and threads == 1 and inferring
    assert len({thread for _, thread, *_ in ran[:4]}) == 2
    assert ran[4][1:] == (here, two_threads, True)


def test_the_process_keeps_its_thread_count(cores: Cores, two_threads: int) -> None:
    """torch's count is one per process as well as per thread: a thread started after the
    workers gets the caller's, not the workers' one."""
    cores.map(where, range(2))
    later: list[int] = []
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert later == [two_threads]
    assert torch.get_num_threads() == two_threads


def test_one_core_runs_everything_here(two_threads: int) -> None:
    here = threading.current_thread().name
    ran = Cores(1).map(where, range(3))
    assert [(thread, threads) for _, thread, threads, _ in ran] == [(here, two_threads)] * 3


def test_a_failing_item_fails_the_call(cores: Cores) -> None:
    def fail_on_odd(item: int) -> int:
        if item % 2:
            raise ValueError(f"item {item}")
        return item

    with pytest.raises(ValueError, match="item 1"):
        cores.map(fail_on_odd, range(4))
    assert cores.map(fail_on_odd, [0, 2]) == [0, 2]  # the workers go on


def test_no_work_after_shutdown(cores: Cores) -> None:
    cores.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        cores.map(where, range(2))


def test_side_by_side_encodings_and_keys_equal_one_after_another(two_threads: int) -> None:
    """Both the model's float32 weights and the packed ones (int8 per image on a CPU)."""
    cpu = torch.device("cpu")
    for packed in (False, True):
        workers = Cores(2)
        try:
            apart = Captioner.load(str(TINY_BLIP), cpu, torch.float32, 30, packed=packed)
            side = Captioner.load(
                str(TINY_BLIP), cpu, torch.float32, 30, packed=packed, cores=workers
            )
            size = int(apart.model.config.vision_config.image_size)
            pixels = torch.randn(5, 3, size, size, generator=torch.Generator().manual_seed(6))
            with torch.inference_mode():
                embeds = apart.encode(pixels)
                assert torch.equal(side.encode(pixels), embeds)
                caches = [c.decoder.empty_slots(6, 8, apart.image_tokens) for c in (apart, side)]
                apart.decoder.write_cross(caches[0], 1, embeds)
                side.decoder.write_cross(caches[1], 1, embeds)
            assert torch.equal(caches[0].cross_kv, caches[1].cross_kv)
            written = [bool(caches[1].cross_kv[:, :, i].any()) for i in range(6)]
            assert written == [False] + [True] * 5
        finally:
            workers.shutdown()
