"""Product image uploads: the type is read from the file's first bytes (never from its name or
the browser's claim), the size is bounded, the pixel dimensions are read from the format's own
header and bounded (MAX_IMAGE_SIDE, MAX_IMAGE_PIXELS), a PNG or JPEG cut off before its end is
refused, and the file is stored under UPLOAD_DIR with a random name. `catalog.media` serves it
at /media/<name>; ProductImage.path is "uploads/<name>".

The headers are read here rather than with an imaging library (none is installed): a few
fixed offsets per format, nothing is decoded."""
from __future__ import annotations

import os
import secrets
import struct
import tempfile
from pathlib import Path
from typing import BinaryIO

from flask import current_app

from .errors import ValidationError

UPLOAD_PREFIX = "uploads/"
ALLOWED = "PNG, JPEG, GIF or WebP"
# Every shopper's browser decodes the image in full, at 4 bytes a pixel: a small file can
# claim 30000x30000 pixels (3.6 GB of memory) and stall or crash the page. 40 megapixels is
# more than any camera photo a product page needs; 10,000 pixels a side keeps out strips.
MAX_IMAGE_SIDE = 10_000
MAX_IMAGE_PIXELS = 40_000_000

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (SOF0-SOF15 without DHT C4, JPG C8 and DAC CC): they carry the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})


def sniff(head: bytes) -> str | None:
    """The file extension for an image's magic number, or None when it is not one we accept."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def dimensions(data: bytes, extension: str) -> tuple[int, int] | None:
    """(width, height) from the image's header, or None when the header is missing, cut off
    or malformed. `extension` is what `sniff` said."""
    try:
        reader = {"png": _png_size, "jpg": _jpeg_size, "gif": _gif_size, "webp": _webp_size}
        return reader[extension](data)
    except (KeyError, IndexError, struct.error):
        return None


def complete(data: bytes, extension: str) -> bool:
    """Whether the file runs to its end marker: a PNG's IEND chunk (every chunk before it
    whole), a JPEG's EOI after its scan, a GIF's trailer, a WebP's RIFF length."""
    try:
        if extension == "png":
            return _png_complete(data)
        if extension == "jpg":
            return _jpeg_complete(data)
        if extension == "gif":
            return data.rstrip(b"\x00").endswith(b"\x3b")
        if extension == "webp":
            return len(data) >= 8 + struct.unpack_from("<I", data, 4)[0]
    except (IndexError, struct.error):
        pass
    return False


def _png_size(data: bytes) -> tuple[int, int] | None:
    # The signature, then the IHDR chunk first: length 13, "IHDR", width and height (big-endian).
    length, kind, width, height = struct.unpack_from(">I4sII", data, 8)
    if length != 13 or kind != b"IHDR":
        return None
    return width, height


def _png_complete(data: bytes) -> bool:
    position = len(_PNG_SIGNATURE)
    while position + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        position += 12 + length  # length, type, data, CRC
        if position > len(data):
            return False
        if kind == b"IEND":
            return True
    return False


def _jpeg_segments(data: bytes):
    """(marker, start of its payload, payload length) of each segment before the first scan
    (SOS, which is yielded last with its payload's end as start)."""
    position = 2  # after SOI
    while True:
        if data[position] != 0xFF:
            return
        while data[position] == 0xFF:  # fill bytes
            position += 1
        marker = data[position]
        position += 1
        if marker in _JPEG_STANDALONE:
            continue
        (length,) = struct.unpack_from(">H", data, position)
        if length < 2 or position + length > len(data):
            return
        yield marker, position + 2, length - 2
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            return
        position += length


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    for marker, start, length in _jpeg_segments(data):
        if marker in _JPEG_SOF and length >= 5:
            height, width = struct.unpack_from(">HH", data, start + 1)  # after the precision
            return width, height
    return None


def _jpeg_complete(data: bytes) -> bool:
    for marker, start, length in _jpeg_segments(data):
        if marker == 0xDA:
            # Inside the scan a 0xFF byte is followed by 0x00 or a restart marker, so the first
            # FF D9 after it is the end of the image (progressive files have more scans first).
            return data.find(b"\xff\xd9", start + length) != -1
    return False


def _gif_size(data: bytes) -> tuple[int, int] | None:
    return struct.unpack_from("<HH", data, 6)  # the logical screen


def _webp_size(data: bytes) -> tuple[int, int] | None:
    kind = data[12:16]
    if kind == b"VP8 ":  # lossy: a key frame's start code, then 14-bit width and height
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L":  # lossless: signature 0x2F, then width-1 and height-1 in 14 bits each
        if data[20] != 0x2F:
            return None
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":  # extended: the canvas, width-1 and height-1 in 24 bits each
        if len(data) < 30:
            return None
        return (int.from_bytes(data[24:27], "little") + 1,
                int.from_bytes(data[27:30], "little") + 1)
    return None


def size_problem(width: int, height: int) -> str | None:
    """Why an image of this size is refused, or None."""
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        return (f"The image is {width:,} x {height:,} pixels: too large to show. The limit is "
                f"{MAX_IMAGE_SIDE:,} pixels a side and {MAX_IMAGE_PIXELS // 1_000_000} "
                "megapixels; make it smaller and upload it again.")
    return None


def max_bytes() -> int:
    return int(current_app.config["MAX_UPLOAD_BYTES"])


def _limit_text(limit: int) -> str:
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):g} MB"
    if limit >= 1024:
        return f"{limit / 1024:g} KB"
    return f"{limit} bytes"


def read_checked(stream: BinaryIO, field: str = "image") -> tuple[bytes, str]:
    """Read an upload and check it; returns its bytes and extension, or raises ValidationError
    naming `field`. Reads at most one byte more than the limit."""
    limit = max_bytes()
    data = stream.read(limit + 1)
    if not data:
        raise ValidationError({field: "The file is empty. Choose an image file."})
    if len(data) > limit:
        raise ValidationError({field: f"The file is too large. The limit is {_limit_text(limit)}."})
    extension = sniff(data[:16])
    if extension is None:
        raise ValidationError({field: f"That file is not an image. Upload a {ALLOWED} file."})
    size = dimensions(data, extension)
    if size is None or 0 in size:
        raise ValidationError({field: "That image is damaged: its size cannot be read. Save it "
                                      "again in an image editor and upload it again."})
    if problem := size_problem(*size):
        raise ValidationError({field: problem})
    if not complete(data, extension):
        raise ValidationError({field: "That image is incomplete: the file was cut off before "
                                      "its end. Upload the whole file again."})
    return data, extension


def store(stream: BinaryIO, field: str = "image") -> str:
    """Check and store an upload; returns the ProductImage path ("uploads/<random>.<ext>")."""
    data, extension = read_checked(stream, field)
    directory = Path(current_app.config["UPLOAD_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_hex(16)}.{extension}"
    # Written to a temporary file and renamed: a reader never sees half an image.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return UPLOAD_PREFIX + name


def remove(path: str | None) -> None:
    """Delete an uploaded file (images shipped under static/ are left alone)."""
    if not path or not path.startswith(UPLOAD_PREFIX):
        return
    name = path.removeprefix(UPLOAD_PREFIX)
    if "/" in name or "\\" in name or name.startswith("."):
        return
    (Path(current_app.config["UPLOAD_DIR"]) / name).unlink(missing_ok=True)
