"""Hostile and unusual inputs to the image loader: bombs, oversized chunks, empty and float images."""

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from shm.inference.images import ImageError, load_image
from tests.fuzz import png_chunk, zero_png


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_png_decompression_bomb_is_an_image_error():
    bomb = zero_png(30000, 30000)
    assert len(bomb) < 1_000_000
    assert load_image(zero_png(40, 3000))[:, :, 0].max() == 0  # the same recipe is a valid PNG
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(bomb)


def test_jpeg_header_claiming_65535_squared_is_an_image_error():
    data = bytearray(_encode(Image.new("RGB", (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")  # baseline frame header: marker, length, precision, H, W
    data[sof + 5:sof + 9] = struct.pack(">HH", 65535, 65535)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(bytes(data))


@pytest.mark.parametrize("kind, prefix", [(b"iCCP", b"icc\x00\x00"), (b"zTXt", b"note\x00\x00")])
def test_chunk_inflating_to_20_mb_is_an_image_error(kind, prefix):
    chunk = png_chunk(kind, prefix + zlib.compress(b"\x00" * 20_000_000, 9))
    assert len(chunk) < 25_000
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(zero_png(8, 8, extra=chunk))


def test_truncated_ihdr_is_an_image_error():
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", b"\x00\x00"))


@pytest.mark.parametrize("source", [np.zeros((0, 0, 3), np.uint8), np.zeros((0, 5, 3), np.uint8),
                                    Image.new("RGB", (0, 0))], ids=["array", "array-0xN", "pil"])
def test_empty_image_is_an_image_error(source):
    with pytest.raises(ImageError, match="empty"):
        load_image(source)


def test_empty_image_through_predict_is_an_image_error(tiny_weights):
    from shm.inference.predictor import load_model

    with pytest.raises(ImageError, match="empty"):
        load_model(tiny_weights).predict(np.zeros((0, 0, 3), np.uint8))


def test_float_tiff_is_read_as_zero_to_one():
    grey = np.array([[0.0, 0.25, 0.5, 1.0, 2.0, -1.0]], np.float32)
    out = load_image(_encode(Image.fromarray(grey), "TIFF"))
    assert out.shape == (1, 6, 3) and out.dtype == np.uint8
    assert out[0, :, 0].tolist() == [0, 64, 128, 255, 255, 0]  # outside [0, 1] is clipped


def test_dark_16_bit_image_is_not_stretched():
    values = np.array([[0, 200, 255, 257 * 128, 65535]], np.uint16)  # all but two <= 255
    out = load_image(_encode(Image.fromarray(values), "PNG"))
    assert out[0, :, 0].tolist() == [0, 1, 1, 128, 255]
    dark = load_image(_encode(Image.fromarray(np.full((2, 2), 200, np.uint16)), "PNG"))
    assert dark.max() == 1  # 200 of 65535 is near black, not 200 of 255


def test_signed_32_bit_tiff_uses_its_range():
    values = np.array([[-5, 0, 2**30, 2**31 - 1]], np.int32)
    out = load_image(_encode(Image.fromarray(values), "TIFF"))
    assert out[0, :, 0].tolist() == [0, 0, 128, 255]


@pytest.mark.parametrize("as_path", [True, False], ids=["path", "bytes"])
def test_zero_byte_file_is_empty(tmp_path, as_path):
    path = tmp_path / "zero.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"is empty \(0 bytes\)"):
        load_image(path if as_path else b"")


def test_over_pillows_warning_size_is_refused_without_a_warning():
    big = zero_png(10000, 10000)  # 100 MP: over Pillow's warning (89 MP), under its error
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError, match=r"100\.0 MP, over the limit of 50 MP"):
            load_image(big)
    assert [str(w.message) for w in caught] == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_image(big, max_pixels=10**9).shape == (10000, 10000, 3)  # read, not refused
    assert [str(w.message) for w in caught] == []
