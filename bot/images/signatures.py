"""What a file we do not read is, from its leading bytes, so that the refusal can say so:
documents, archives, programs, audio and video, and HEIC pictures.

ISO media files (MP4, MOV, M4A, HEIC, AVIF) all begin with an `ftyp` box: a major brand, a
version, then compatible brands (ISO/IEC 14496-12, 4.3). A phone's HEIC may name `mif1` as its
major brand and `heic` only among the compatible ones, so every brand is read.
"""

from __future__ import annotations

# Leading bytes of files people commonly send by mistake: (bytes, key in wording.FILE_KINDS).
NOT_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "pdf"),
    (b"PK\x03\x04", "zip"),
    (b"\x7fELF", "linux"),
    (b"MZ", "windows"),
    *((magic, "macos") for magic in (b"\xfe\xed\xfa", b"\xce\xfa\xed", b"\xcf\xfa\xed")),
    (b"\xca\xfe\xba\xbe", "macos_java"),
    (b"\x1f\x8b", "gzip"),
    (b"Rar!", "rar"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"\x1a\x45\xdf\xa3", "video"),
    (b"ID3", "audio"),
    (b"fLaC", "audio"),
    (b"OggS", "ogg"),
)
HEIC = "HEIC"
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_AUDIO_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A "})
_VIDEO_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"qt  "}
    | {b"M4V ", b"M4VH", b"M4VP", b"3gp4", b"3gp5", b"3gp6", b"3g2a", b"dash", b"mmp4", b"f4v "}
)
_RIFF_KINDS = {b"WAVE": "audio", b"AVI ": "video"}  # (WEBP is an image we read)


def file_kind(data: bytes) -> str | None:
    """A key of wording.FILE_KINDS, or HEIC; None when it may be an image we read."""
    for magic, kind in NOT_IMAGE_MAGIC:
        if data.startswith(magic):
            return kind
    if data.startswith(b"RIFF"):
        return _RIFF_KINDS.get(data[8:12])
    brands = set(_iso_brands(data))
    if not brands or brands & _AVIF_BRANDS:
        return None
    if brands & _HEIC_BRANDS:
        return HEIC
    if data[8:12] in _AUDIO_BRANDS:
        return "audio"
    return "video" if brands & _VIDEO_BRANDS else None


def _iso_brands(data: bytes) -> list[bytes]:
    if data[4:8] != b"ftyp":
        return []
    end = min(int.from_bytes(data[:4], "big"), len(data), 1024)
    return [data[8:12], *(data[at : at + 4] for at in range(16, end - 3, 4))]


def declared_kind(content_type: str | None) -> str | None:
    """ "video" or "audio" from an attachment's declared type (message.mdx, "Attachment
    Object": its media type), known before a byte of it is downloaded."""
    kind = (content_type or "").split("/")[0].strip().lower()
    return kind if kind in ("video", "audio") else None
