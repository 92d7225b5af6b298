"""The safe image loader against a corpus of good and hostile files (tests/image_corpus.py)."""

from __future__ import annotations

import io
import pickle
import random
import struct
import subprocess
import sys
import time
import warnings
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from bot import wording
from bot.images import colours
from bot.images import decode as images
from bot.images.bombs import MAX_JPEG_SCANS, jpeg_scans
from bot.images.budget import PixelBudget
from bot.images.decode import (
    ALLOWED_FORMATS,
    DRAFT_SIZE,
    IMAGE_EXTENSIONS,
    ImageError,
    ImageLimits,
    load_frames,
    load_image,
    load_image_file,
)
from tests import image_corpus
from tests.image_corpus import CorpusItem, build_corpus, write_corpus

MAX_BYTES = 1_048_576
LIMITS = ImageLimits(max_bytes=MAX_BYTES)
CORPUS = build_corpus(MAX_BYTES)
BY_NAME = {item.name: item for item in CORPUS}
CODES = {
    "empty",
    "too_large",
    "not_image",
    "unsupported_format",
    "corrupt",
    "truncated",
    "too_many_pixels",
    "aspect_ratio",
    "bomb",
    "unreadable",
}
# Small enough that a fuzzed header cannot make a test allocate hundreds of megabytes.
FUZZ_LIMITS = ImageLimits(max_bytes=MAX_BYTES, max_pixels=1_000_000)


@pytest.fixture(autouse=True)
def _bomb_warning_is_error() -> None:
    # pytest runs every test inside its own catch_warnings, which drops the filters that
    # bot.images.decode installed at import; put them back for the test, as production has them.
    images.install_warning_filters()


def outcome(data: bytes, limits: ImageLimits = LIMITS) -> str:
    try:
        img = load_image(data, limits)
    except ImageError as exc:
        return exc.code
    assert img.mode == "RGB"
    return "ok"


def near(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 24) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def pixel(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = img.getpixel(xy)
    assert isinstance(value, tuple)
    return value


# ---------------------------------------------------------------- the corpus


def test_corpus_is_big_and_varied() -> None:
    assert len(CORPUS) >= 30
    assert len(BY_NAME) == len(CORPUS), "names must be unique"
    assert {item.expected for item in CORPUS} >= CODES - {"unreadable"} | {"ok"}
    assert sum(len(item.data) for item in CORPUS) < 4 * MAX_BYTES


def test_corpus_builds_quickly() -> None:
    start = time.perf_counter()
    build_corpus()
    assert time.perf_counter() - start < 3.0


@pytest.mark.parametrize("item", CORPUS, ids=[item.name for item in CORPUS])
def test_corpus_item(item: CorpusItem) -> None:
    if item.expected == "ok":
        img = load_image(item.data, LIMITS)
        assert type(img) is Image.Image  # a plain loaded copy, not a file-backed ImageFile
        assert img.mode == "RGB"
        width, height = img.size
        assert 1 <= width <= 10_000 and 1 <= height <= 10_000
        assert width * height <= LIMITS.max_pixels
        return
    with pytest.raises(ImageError) as info:
        load_image(item.data, LIMITS)
    error = info.value
    assert error.code == item.expected, error.reason
    assert error.reason and str(error) == error.reason
    assert "Traceback" not in error.reason and "\n" not in error.reason
    assert "\\x" not in error.reason and "b'" not in error.reason  # no raw bytes echoed back
    assert error.code in CODES


def test_bomb_png_is_a_real_png() -> None:
    """The bomb is a valid image, so the loader refuses it for its size and not by luck."""
    data = image_corpus.png_bomb(12000, 12000)
    length = struct.unpack(">I", data[33:37])[0]
    stream, decoder, total = data[41 : 41 + length], zlib.decompressobj(), 0
    while stream:
        total += len(decoder.decompress(stream, 1 << 24))
        stream = decoder.unconsumed_tail
    assert decoder.eof and total == 12000 * (1 + 12000 // 8)
    assert len(data) < 64_000


def test_animated_gif_really_has_500_frames() -> None:
    with Image.open(io.BytesIO(BY_NAME["gif_animated_500"].data)) as img:
        assert getattr(img, "n_frames", 1) == 500


# ---------------------------------------------------------------- specific behaviour


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    data = BY_NAME[f"orientation_{orientation}"].data
    with Image.open(io.BytesIO(data)) as raw:  # the stored pixels really are turned
        rotated = orientation >= 5
        assert raw.size == (image_corpus.ORIENT_SIZE[::-1] if rotated else image_corpus.ORIENT_SIZE)
    img = load_image(data)
    width, height = img.size
    assert img.size == image_corpus.ORIENT_SIZE
    assert near(pixel(img, (4, 4)), image_corpus.MARKER)
    assert near(pixel(img, (width - 5, 4)), image_corpus.MARKER2)
    assert near(pixel(img, (4, height - 5)), image_corpus.BACKGROUND)
    assert near(pixel(img, (width - 5, height - 5)), image_corpus.BACKGROUND)


def test_corrupt_exif_still_loads(caplog: pytest.LogCaptureFixture) -> None:
    plain = load_image(BY_NAME["jpeg"].data)
    img = load_image(BY_NAME["jpeg_corrupt_exif"].data)
    assert img.size == plain.size
    assert [r for r in caplog.records if r.levelno >= 30] == []


@pytest.mark.parametrize(
    ("name", "left"),
    [
        ("png_rgba", image_corpus.MARKER),
        ("png_palette_transparent", image_corpus.MARKER),
        ("png_la", (60, 60, 60)),
    ],
)
def test_transparency_becomes_white(name: str, left: tuple[int, int, int]) -> None:
    img = load_image(BY_NAME[name].data)
    assert pixel(img, (2, 8)) == left
    assert pixel(img, (12, 8)) == (255, 255, 255)


@pytest.mark.parametrize("name", ["gif_animated_500", "webp_animated"])
def test_first_frame_of_animation(name: str) -> None:
    img = load_image(BY_NAME[name].data)
    assert near(pixel(img, (0, 0)), image_corpus.FIRST_FRAME, tolerance=8)


def test_draft_shrinks_large_jpeg_but_not_below_draft_size() -> None:
    img = load_image(BY_NAME["jpeg_large"].data)
    full_w, full_h = image_corpus.LARGE_JPEG_SIZE
    assert DRAFT_SIZE <= img.width < full_w
    assert DRAFT_SIZE <= img.height < full_h
    assert img.width * full_h == img.height * full_w  # aspect ratio kept


def test_draft_can_be_turned_off() -> None:
    img = load_image(BY_NAME["jpeg_large"].data, draft_size=None)
    assert img.size == image_corpus.LARGE_JPEG_SIZE


def test_draft_leaves_small_jpeg_alone() -> None:
    # 160 x 120 is within twice the draft size on both sides: neither drafted nor shrunk.
    assert load_image(BY_NAME["jpeg"].data, draft_size=80).size == (160, 120)


@pytest.mark.parametrize(
    ("mode", "size", "fmt"),
    [
        ("RGB", (3000, 1200), "PNG"),
        ("RGBA", (1200, 3000), "PNG"),
        ("P", (2500, 2500), "GIF"),
        ("L", (4000, 400), "PNG"),
        ("I;16", (1600, 1600), "PNG"),
        ("RGB", (2000, 2000), "WEBP"),
    ],
)
def test_every_format_comes_out_no_larger_than_twice_the_draft_size(
    mode: str, size: tuple[int, int], fmt: str
) -> None:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, fmt)
    img = load_image(buf.getvalue())
    assert max(img.size) == 2 * DRAFT_SIZE and img.mode == "RGB"
    ratio = size[0] / size[1]
    assert img.width / img.height == pytest.approx(ratio, rel=0.05)


def test_a_large_paletted_image_keeps_its_colours_when_shrunk() -> None:
    src = Image.new("P", (3000, 3000))
    src.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    src.paste(1, (1500, 0, 3000, 3000))  # right half blue, left half red
    buf = io.BytesIO()
    src.save(buf, "PNG")
    img = load_image(buf.getvalue())
    assert near(pixel(img, (10, 10)), (255, 0, 0)) and near(pixel(img, (700, 10)), (0, 0, 255))


def test_cmyk_and_grey_jpeg_come_out_rgb() -> None:
    assert near(pixel(load_image(BY_NAME["jpeg_cmyk"].data), (16, 16)), (255, 0, 0))
    r, g, b = pixel(load_image(BY_NAME["jpeg_grey"].data), (10, 10))
    assert r == g == b


def test_16bit_png_mid_grey_stays_mid_grey() -> None:
    with Image.open(io.BytesIO(BY_NAME["png_16bit"].data)) as raw:
        assert raw.mode.startswith("I")
    r, g, b = pixel(load_image(BY_NAME["png_16bit"].data), (5, 5))
    assert r == g == b and abs(r - 128) <= 1


def test_16bit_png_gradient_keeps_its_range() -> None:
    ramp = Image.linear_gradient("L").resize((64, 64)).convert("I")
    ramp16 = ramp.point(lambda v: v * 257).convert("I;16")  # 0..65535
    buf = io.BytesIO()
    ramp16.save(buf, "PNG")
    extrema = load_image(buf.getvalue()).convert("L").getextrema()
    assert isinstance(extrema[0], int) and isinstance(extrema[1], int)
    assert extrema[0] <= 8 and extrema[1] >= 247


def test_a_large_16bit_png_is_made_8bit_only_once_shrunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside the pixel budget, not after it: made 8-bit whole, a 10 KB file of 7000 x 7000
    would have cost 600 MB on each decoding thread at once."""
    ramp = Image.linear_gradient("L").resize((2000, 2000)).convert("I")
    buf = io.BytesIO()
    ramp.point(lambda v: v * 257).convert("I;16").save(buf, "PNG")
    converted: list[tuple[int, int]] = []
    real = colours.to_rgb

    def watched(img: Image.Image) -> Image.Image:
        converted.append(img.size)
        return real(img)

    monkeypatch.setattr(images, "to_rgb", watched)
    img = load_image(buf.getvalue())
    assert converted and max(max(size) for size in converted) <= 2 * DRAFT_SIZE
    assert max(img.size) == 2 * DRAFT_SIZE
    extrema = img.convert("L").getextrema()
    assert isinstance(extrema[0], int) and isinstance(extrema[1], int)
    assert extrema[0] <= 8 and extrema[1] >= 247


@pytest.mark.parametrize(
    "name", ["bomb_png", "bomb_png_warning", "bomb_gif", "bomb_webp_vp8l", "bomb_webp_vp8x"]
)
def test_bombs_are_refused_fast_and_small(name: str) -> None:
    process = psutil.Process()
    before = process.memory_info().rss
    start = time.perf_counter()
    assert outcome(BY_NAME[name].data) == "bomb"
    assert time.perf_counter() - start < 0.5
    assert process.memory_info().rss - before < 50 * 1024 * 1024


@pytest.mark.parametrize(
    "name", ["bomb_png", "bomb_gif", "bomb_webp_vp8x", "huge_header_truncated", "aspect_ratio"]
)
def test_size_checks_happen_before_decoding(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert outcome(BY_NAME[name].data) == BY_NAME[name].expected


def test_pixel_limit_follows_the_limits_given() -> None:
    data = BY_NAME["jpeg"].data  # 160 x 120 = 19,200 pixels
    assert outcome(data, ImageLimits(max_pixels=19_200)) == "ok"
    assert outcome(data, ImageLimits(max_pixels=19_199)) == "too_many_pixels"


def test_aspect_ratio_boundary() -> None:
    def png(size: tuple[int, int]) -> bytes:
        buf = io.BytesIO()
        Image.new("L", size, 128).save(buf, "PNG")
        return buf.getvalue()

    assert outcome(png((400, 20))) == "ok"
    assert outcome(png((20, 400))) == "ok"
    assert outcome(png((420, 20))) == "aspect_ratio"
    assert outcome(png((400, 20)), ImageLimits(max_aspect_ratio=19.9)) == "aspect_ratio"


@pytest.mark.parametrize("data", [b"ok", b"hi\n", b"yes", b"thanks!"])
def test_a_few_words_are_a_text_file_not_a_damaged_image(data: bytes) -> None:
    with pytest.raises(ImageError) as info:
        load_image(data)
    assert info.value.reason == wording.not_an_image(wording.FILE_KINDS["text"])


def test_too_large_reason_is_readable() -> None:
    with pytest.raises(ImageError) as info:
        load_image(b"\xff" * 32_767_000)
    assert info.value.reason == "the file is 31.2 MB; the limit is 25.0 MB"
    # A small limit (MAX_IMAGE_BYTES may be as low as 1024) is named too, not as "0.0 MB".
    with pytest.raises(ImageError) as info:
        load_image(b"\xff" * 3000, ImageLimits(max_bytes=2048))
    assert info.value.reason == "the file is 2.9 KB; the limit is 2.0 KB"
    with pytest.raises(ImageError) as info:  # in the limit's unit, not "0.1 MB; ... 100.0 KB"
        load_image(b"\xff" * 110_000, ImageLimits(max_bytes=102_400))
    assert info.value.reason == "the file is 107.4 KB; the limit is 100.0 KB"


@pytest.mark.parametrize(
    ("size", "limits", "refusal"),
    [
        (
            (7072, 7072),
            ImageLimits(max_pixels=50_000_000),
            "the image is 7072 × 7072 pixels (50,013,184 pixels); the limit is 50,000,000 pixels",
        ),
        (
            (300, 300),
            ImageLimits(max_pixels=40_000),
            "the image is 300 × 300 pixels (90,000 pixels); the limit is 40,000 pixels",
        ),
        (
            (2041, 100),
            ImageLimits(max_aspect_ratio=20),
            "the image is 2041 × 100 pixels, too long and thin (20.41:1); the limit is 20:1",
        ),
    ],
)
def test_a_refusal_never_reads_as_the_limit_itself(
    size: tuple[int, int], limits: ImageLimits, refusal: str
) -> None:
    """Rounded to the limit's precision, a size just over it read "(50.0 megapixels); the
    limit is 50.0 megapixels", and a small limit "0.0 megapixels"."""
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, "PNG")
    with pytest.raises(ImageError) as info:
        load_image(buffer.getvalue(), limits)
    assert info.value.reason == refusal


@pytest.mark.parametrize(
    ("name", "refusal"),
    [
        (
            "bomb_png",
            "the image is 30000 × 30000 pixels (900.0 megapixels), too large to open safely",
        ),
        (
            "bomb_png_warning",
            "the image is 12000 × 12000 pixels (144.0 megapixels), too large to open safely",
        ),
        (
            "bomb_webp_vp8x",
            "the image is 10000.0 megapixels, too large to open safely",
        ),  # WebP checks in its header
        ("huge_header_truncated", "the image is 9000 × 9000 pixels (81.0 megapixels)"),
    ],
)
def test_every_size_refusal_names_the_size_and_the_limit(name: str, refusal: str) -> None:
    with pytest.raises(ImageError) as info:
        load_image(BY_NAME[name].data, LIMITS)
    assert info.value.reason == f"{refusal}; the limit is 50.0 megapixels"


def test_words_for_a_file_differ_only_where_an_upload_is_meant() -> None:
    """A Discord user can upload again; whoever holds a file cannot, and sends nothing."""
    reasons = {}
    for name in ("truncated_png", "svg", "heic", "empty"):
        with pytest.raises(ImageError) as info:
            load_image(BY_NAME[name].data, LIMITS)
        reasons[name] = (info.value.reason, info.value.file_reason)
    assert reasons["truncated_png"] == (
        "the image is cut off; try uploading it again",
        "the image is cut off: the file is incomplete",
    )
    assert reasons["svg"][1].startswith("SVG drawings cannot be read; convert it to a JPEG, ")
    assert reasons["heic"][1].startswith("HEIC images are not supported; convert it to a JPEG, ")
    assert reasons["empty"] == ("the file is empty", "the file is empty")
    error = pickle.loads(pickle.dumps(ImageError("truncated", "upload again", "incomplete")))
    assert (error.reason, error.file_reason) == ("upload again", "incomplete")


@pytest.mark.parametrize(
    ("name", "kind"),
    [("mp4", "a video"), ("mov", "a video"), ("avi", "a video"), ("m4a", "an audio file"),
     ("wav", "an audio file"), ("heic_mif1", "HEIC")],
)  # fmt: skip
def test_video_audio_and_heic_are_named_by_their_container(name: str, kind: str) -> None:
    """ISO media (MP4, MOV, M4A, HEIC) is told apart by its brands, RIFF by its form type: a
    WAV was called a damaged image, and a phone's video or HEIC not an image at all."""
    with pytest.raises(ImageError) as info:
        load_image(BY_NAME[name].data, LIMITS)
    if kind == "HEIC":
        assert info.value.reason.startswith("HEIC images are not supported")
    else:
        assert info.value.reason == f"this is not an image (looks like {kind})"


def test_image_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(ImageError("empty", "the file is empty")))
    assert (error.code, error.reason, str(error)) == (
        "empty",
        "the file is empty",
        "the file is empty",
    )
    assert isinstance(error, ValueError)


def test_global_pillow_settings_are_untouched() -> None:
    before = Image.MAX_IMAGE_PIXELS
    for item in CORPUS:
        outcome(item.data)
    assert before == Image.MAX_IMAGE_PIXELS
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_nothing_logged_at_warning_for_user_input(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="bot.images.decode")
    for item in CORPUS:
        outcome(item.data)
    assert [r for r in caplog.records if r.levelno >= 30] == []


def test_bomb_is_refused_even_if_someone_silenced_the_warning() -> None:
    with warnings.catch_warnings():  # single-threaded test; production never does this
        warnings.simplefilter("ignore")
        assert outcome(BY_NAME["bomb_png_warning"].data) == "bomb"


def test_bomb_warning_filter_is_installed_at_import() -> None:
    code = (
        "import warnings\n"
        "from PIL import Image\n"
        "import bot.images.decode\n"
        "assert any(a == 'error' and c is Image.DecompressionBombWarning\n"
        "           for a, _, c, _, _ in warnings.filters)\n"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=60)


def test_formats_and_extensions() -> None:
    assert ALLOWED_FORMATS[:5] == ("JPEG", "PNG", "GIF", "WEBP", "BMP")
    assert {".jpg", ".jpeg", ".jfif", ".png", ".gif", ".webp", ".bmp"} <= IMAGE_EXTENSIONS
    assert (".avif" in IMAGE_EXTENSIONS) == ("AVIF" in ALLOWED_FORMATS)
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)


# ---------------------------------------------------------------- files on disk


def test_oversized_file_is_refused_without_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.jpg"
    with path.open("wb") as fh:
        fh.truncate(ImageLimits().max_bytes + 1)  # sparse: no disk used, nothing to read

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was opened")

    monkeypatch.setattr(images, "open", no_open, raising=False)
    with pytest.raises(ImageError) as info:
        load_image_file(path)
    assert info.value.code == "too_large"


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_file_whose_size_lies_is_read_only_up_to_the_limit() -> None:
    with pytest.raises(ImageError) as info:
        load_image_file("/dev/zero", ImageLimits(max_bytes=4096))
    assert info.value.code == "too_large"


def test_missing_and_unreadable_paths(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.png", tmp_path):
        with pytest.raises(ImageError) as info:
            load_image_file(path)
        assert info.value.code == "unreadable"
        assert info.value.reason.startswith("cannot read the file: ")


def test_written_corpus_loads_the_same_from_disk(tmp_path: Path) -> None:
    items = write_corpus(tmp_path / "corpus", MAX_BYTES)
    written = sorted(p.name for p in (tmp_path / "corpus").iterdir())
    assert written == sorted(item.disk_name for item in items)
    assert not (tmp_path / "etc").exists()
    for item in items:
        try:
            load_image_file(tmp_path / "corpus" / item.disk_name, LIMITS)
            got = "ok"
        except ImageError as exc:
            got = exc.code
        assert got == item.expected, item.name


# ---------------------------------------------------------------- threads and fuzzing


def test_concurrent_loading_gives_the_same_answers() -> None:
    work = [item for item in CORPUS if item.name != "jpeg_large"] * 4
    random.Random(7).shuffle(work)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda item: outcome(item.data), work))
    assert results == [item.expected for item in work]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_only_raise_image_error(data: bytes) -> None:
    outcome(data, FUZZ_LIMITS)


def _seeds() -> Iterator[bytes]:
    small = (item for item in CORPUS if len(item.data) < 64_000 and item.expected != "empty")
    return (item.data for item in small)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(list(_seeds())),
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=8),
    st.floats(0.05, 1.0),
)
def test_damaged_corpus_files_only_raise_image_error(
    data: bytes, flips: list[tuple[float, int]], keep: float
) -> None:
    damaged = bytearray(data)
    for where, value in flips:
        damaged[int(where * len(damaged))] = value
    outcome(bytes(damaged[: max(1, int(len(damaged) * keep))]), FUZZ_LIMITS)


def _progressive(size: tuple[int, int] = (640, 480)) -> bytes:
    picture = Image.new("RGB", size, "white")
    picture.paste((200, 30, 30), (0, 0, size[0] // 2, size[1]))
    out = io.BytesIO()
    picture.save(out, "JPEG", progressive=True, quality=90)
    return out.getvalue()


def test_a_progressive_jpeg_of_too_many_scans_is_refused_before_decoding() -> None:
    """Each scan is a pass over every block whatever the reduced size: thousands of tiny scans
    held a decoding thread for seconds per 100 KB. The last scan, repeated, makes a file of
    200; the scans of an embedded thumbnail (inside APP1) do not count."""
    data = _progressive()
    assert 2 <= jpeg_scans(data) <= 20
    last = data.rindex(b"\xff\xda")
    many = data[:last] + data[last:-2] * 200 + b"\xff\xd9"
    assert jpeg_scans(many) == MAX_JPEG_SCANS + 1  # counting stops past the limit
    with pytest.raises(ImageError) as info:
        load_image(many)
    assert info.value.code == "bomb" and "scans" in info.value.reason
    thumbnail = b"\xff\xe1" + (2 + 3 * 2000).to_bytes(2, "big") + data[last : last + 6] * 1000
    assert jpeg_scans(data[:2] + thumbnail + data[2:]) == jpeg_scans(data)
    assert load_image(data).size == (640, 480)


def test_too_many_scans_are_counted_past_stray_bytes_and_in_an_mpo() -> None:
    """libjpeg skips stray bytes before a marker and reads no length after a restart marker,
    and Pillow opens a JPEG with a multi-picture index as an MPO: none may hide the scans."""
    data = _progressive()
    last = data.rindex(b"\xff\xda")
    app0 = 4 + int.from_bytes(data[4:6], "big")
    stray = data[:app0] + b"\x00\x17" + data[app0:last] + data[last:-2] * 200 + b"\xff\xd9"
    assert jpeg_scans(stray) == MAX_JPEG_SCANS + 1
    # A restart marker has no length (nor have TEM and stuffing): read as one, the next marker's
    # bytes made a jump over every scan.
    restart = data[:app0] + b"\xff\xd0" + data[app0:last] + data[last:-2] * 200 + b"\xff\xd9"
    assert jpeg_scans(restart) == MAX_JPEG_SCANS + 1
    picture = Image.open(io.BytesIO(data))
    out = io.BytesIO()
    picture.save(out, "MPO", save_all=True, append_images=[picture], progressive=True)
    mpo = out.getvalue()
    end = mpo.index(b"\xff\xd9")  # of the first picture, which is the one decoded
    last = mpo.rindex(b"\xff\xda", 0, end)
    many = mpo[:last] + mpo[last:end] * 200 + mpo[end:]
    assert Image.open(io.BytesIO(many)).format == "MPO"
    for bomb in (stray, restart, many):
        with pytest.raises(ImageError) as info:
            load_image(bomb)
        assert info.value.code == "bomb" and "scans" in info.value.reason
    assert load_image(mpo).size == (640, 480)


def test_a_progressive_jpeg_holds_the_budget_for_its_full_size() -> None:
    """It keeps the whole picture's coefficients while it decodes, at any reduced size."""
    held: list[int] = []

    class Recording(PixelBudget):
        @contextmanager
        def hold(self, pixels: int) -> Iterator[None]:
            held.append(pixels)
            yield

    load_frames(_progressive((2000, 1500)), budget=Recording())
    baseline = io.BytesIO()
    Image.new("RGB", (2000, 1500), "white").save(baseline, "JPEG")
    load_frames(baseline.getvalue(), budget=Recording())
    assert held[0] == 2000 * 1500 and held[1] <= 2000 * 1500 // 4  # drafted at half or less


def test_an_avif_is_decoded_on_its_prep_thread_alone() -> None:
    """Pillow's default gives libavif a thread per CPU for each image; the prep pool decodes
    several images at once, beside the model's threads."""
    avif = pytest.importorskip("PIL.AvifImagePlugin")
    import bot.images.loader  # noqa: F401  (sets it on import, as the bot's start does)

    assert avif.DEFAULT_MAX_THREADS == 1


def _palette_png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("P", size, 3).save(buffer, "PNG")
    return buffer.getvalue()


def _two_frame_gif(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    frames = [Image.new("P", size, index) for index in (1, 2)]
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


@pytest.mark.parametrize("data", [_palette_png((3000, 3000)), _two_frame_gif((3000, 3000))])
def test_a_huge_decode_is_freed_before_its_pixels_are_handed_back(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A palette image and an animation are read into new pictures; the full-size one they
    came from must be gone when the budget trims the freed memory and lets the next huge
    decode start, or the trim gives nothing back and two full sizes overlap."""
    opened: list[Image.Image] = []
    alive_at_trim: list[bool] = []
    real_open = images._open

    def recording_open(raw: bytes) -> ImageFile.ImageFile:
        opened.append(real_open(raw))
        return opened[-1]

    def trim() -> None:
        try:
            opened[-1].getpixel((0, 0))
            alive_at_trim.append(True)
        except ValueError:  # "Operation on closed image"
            alive_at_trim.append(False)

    monkeypatch.setattr(images, "_open", recording_open)
    monkeypatch.setattr(sys.modules["bot.images.budget"], "release_freed", trim)
    frames = load_frames(data, budget=PixelBudget())
    assert alive_at_trim == [False]
    assert max(frames.caption.size) == 2 * DRAFT_SIZE
