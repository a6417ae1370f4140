"""Product image uploads: the type is read from the file's first bytes (never from its name or
the browser's claim), the size is bounded, and the file is stored under UPLOAD_DIR with a
random name. `catalog.media` serves it at /media/<name>; ProductImage.path is "uploads/<name>"."""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import BinaryIO

from flask import current_app

from .errors import ValidationError

UPLOAD_PREFIX = "uploads/"
ALLOWED = "PNG, JPEG, GIF or WebP"


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
