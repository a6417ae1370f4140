"""The image upload check reads each accepted format's size from its header (no imaging
library), bounds it, and refuses a PNG or JPEG cut off before its end."""
from __future__ import annotations

from io import BytesIO

import pytest

from shop.services import images
from shop.services.errors import ValidationError
from tests.factories import gif_bytes, jpeg_bytes, png_bytes, webp_bytes


@pytest.mark.parametrize("extension,data,size", [
    ("png", png_bytes(3, 2), (3, 2)),
    ("png", png_bytes(30000, 30000, pixels=False), (30000, 30000)),
    ("jpg", jpeg_bytes(640, 480), (640, 480)),
    ("jpg", jpeg_bytes(65535, 1), (65535, 1)),
    ("gif", gif_bytes(17, 5), (17, 5)),
    ("webp", webp_bytes(300, 200, "VP8 "), (300, 200)),
    ("webp", webp_bytes(16383, 1, "VP8 "), (16383, 1)),
    ("webp", webp_bytes(300, 200, "VP8L"), (300, 200)),
    ("webp", webp_bytes(16384, 16384, "VP8L"), (16384, 16384)),
    ("webp", webp_bytes(300, 200, "VP8X"), (300, 200)),
    ("webp", webp_bytes(1 << 24, 1, "VP8X"), (1 << 24, 1)),
], ids=["png", "png-huge", "jpeg", "jpeg-wide", "gif", "webp-vp8", "webp-vp8-wide", "webp-vp8l",
        "webp-vp8l-largest", "webp-vp8x", "webp-vp8x-wide"])
def test_the_size_is_read_from_each_formats_header(extension, data, size):
    assert images.sniff(data[:16]) == extension
    assert images.dimensions(data, extension) == size
    assert images.complete(data, extension)


def test_a_jpeg_size_is_found_after_other_segments_and_fill_bytes():
    data = jpeg_bytes(40, 30)
    dqt = b"\xff\xdb\x00\x43" + bytes(65)
    data = data[:2] + dqt + b"\xff" + data[2:]  # a fill byte before APP0
    assert images.dimensions(data, "jpg") == (40, 30) and images.complete(data, "jpg")


@pytest.mark.parametrize("extension,data", [
    ("png", png_bytes()[:20]),                                  # IHDR cut off
    ("png", b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDX" + bytes(17)),  # no IHDR first
    ("jpg", jpeg_bytes()[:12]),                                 # cut off in APP0
    ("jpg", b"\xff\xd8\xff\xe0\x00\x10" + bytes(14) + b"\xff\xda\x00\x02"),  # scan, no SOF
    ("jpg", b"\xff\xd8\xff\xe0" + bytes(200)),                  # a length past the end
    ("gif", b"GIF89a\x01"),
    ("webp", b"RIFF\x00\x00\x00\x00WEBPVP8 "),
    ("webp", b"RIFF\x10\x00\x00\x00WEBPVP8 \x04\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
    ("webp", b"RIFF\x10\x00\x00\x00WEBPXXXX\x00\x00\x00\x00" + bytes(20)),
], ids=["png-ihdr-cut", "png-no-ihdr", "jpeg-app0-cut", "jpeg-no-sof", "jpeg-bad-length",
        "gif-cut", "webp-cut", "webp-vp8-no-start-code", "webp-unknown-chunk"])
def test_a_header_that_cannot_be_read_gives_no_size(extension, data):
    assert images.dimensions(data, extension) is None


@pytest.mark.parametrize("extension,data", [
    ("png", png_bytes()[:-12]),                 # no IEND
    ("png", png_bytes()[:-20]),                 # IDAT cut off
    ("png", png_bytes()[:30]),                  # cut off after the size
    ("jpg", jpeg_bytes()[:-2]),                 # no EOI
    ("jpg", jpeg_bytes()[:-4]),                 # cut off in the scan
    ("gif", gif_bytes()[:-1]),
    ("webp", webp_bytes(2, 2, "VP8L")[:-3]),
], ids=["png-no-iend", "png-idat-cut", "png-cut-at-30", "jpeg-no-eoi", "jpeg-scan-cut",
        "gif-no-trailer", "webp-short"])
def test_a_file_cut_off_before_its_end_is_not_complete(extension, data):
    assert images.dimensions(data, extension) is not None
    assert not images.complete(data, extension)


@pytest.mark.parametrize("size,refused", [
    ((10_000, 4_000), False),
    ((6_324, 6_324), False),            # 39.99 megapixels
    ((10_001, 1), True),
    ((1, 10_001), True),
    ((8_000, 5_001), True),             # 40.008 megapixels
    ((30_000, 30_000), True),
])
def test_the_pixel_limits(size, refused):
    assert (images.size_problem(*size) is not None) is refused


@pytest.mark.parametrize("data,message", [
    (png_bytes(30000, 30000, pixels=False), "The image is 30,000 x 30,000 pixels"),
    (gif_bytes(10_001, 1), "The image is 10,001 x 1 pixels"),
    (png_bytes(0, 5), "That image is damaged"),
    (png_bytes()[:20], "That image is damaged"),
    (png_bytes()[:30], "That image is incomplete"),
    (png_bytes()[:-12], "That image is incomplete"),
    (jpeg_bytes()[:-2], "That image is incomplete"),
], ids=["png-huge", "gif-wide", "png-0-wide", "png-ihdr-cut", "png-cut-at-30", "png-no-iend",
        "jpeg-no-eoi"])
def test_read_checked_refuses_with_a_message_for_the_field(app, data, message):
    with app.app_context(), pytest.raises(ValidationError) as refused:
        images.read_checked(BytesIO(data), field="upload")
    assert refused.value.errors["upload"].startswith(message)


@pytest.mark.parametrize("data,extension", [
    (png_bytes(), "png"), (jpeg_bytes(), "jpg"), (gif_bytes(), "gif"), (webp_bytes(), "webp"),
    (png_bytes(images.MAX_IMAGE_SIDE, 4_000, pixels=False), "png"),
], ids=["png", "jpeg", "gif", "webp", "png-at-the-limit"])
def test_read_checked_accepts_whole_images_within_the_limits(app, data, extension):
    with app.app_context():
        assert images.read_checked(BytesIO(data)) == (data, extension)
