"""Hostile image files for tests: decompression bombs, and seeded mutations of small valid
JPEG, PNG, WebP and TIFF files for fuzzing image readers.

The mutations serve tests/test_fuzz.py (a short run) and bench/fuzz_images.py (a long one).
PNG mutants get their chunk CRCs recomputed half of the time, so the mutation reaches the chunk
parsers instead of stopping at the checksum.
"""

from __future__ import annotations

import io
import math
import random
import struct
import zlib
from collections.abc import Iterator

import numpy as np
from PIL import Image

INTERESTING = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00", b"\xff\xff", b"\x7f\xff",
               b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x01")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body, CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def zero_png(width: int, height: int, extra: bytes = b"") -> bytes:
    """An 8-bit grey PNG of zeros. Its pixel data is one deflated run of rows repeated (a full
    flush ends it, so copies chain), then the checksum: 30000x30000 is 875 KB, made in 1 s."""
    rows = math.gcd(height, 1000)
    block = b"\x00" * ((1 + width) * rows)  # a filter byte, then the pixels, per row
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    once = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    checksum = 1
    for _ in range(height // rows):
        checksum = zlib.adler32(block, checksum)
    body = b"\x78\xda" + once * (height // rows) + packer.flush() + checksum.to_bytes(4, "big")
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return (b"\x89PNG\r\n\x1a\n" + header + extra + png_chunk(b"IDAT", body)
            + png_chunk(b"IEND", b""))


def seed_files() -> list[tuple[str, bytes]]:
    """(format, bytes) of small valid files in several modes, with EXIF, ICC and text chunks."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (12, 16, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    files = []
    for fmt, img, kw in (
            ("JPEG", rgb, {"exif": exif.tobytes()}),
            ("JPEG", rgb.convert("L"), {"progressive": True}),
            ("JPEG", rgb.convert("CMYK"), {}),
            ("PNG", rgb, {}),
            ("PNG", rgb.convert("RGBA"), {}),
            ("PNG", rgb.convert("P"), {"transparency": 0}),
            ("PNG", Image.fromarray(np.arange(192, dtype=np.uint16).reshape(12, 16) * 300), {}),
            ("WEBP", rgb, {"quality": 80}),
            ("WEBP", rgb.convert("RGBA"), {"lossless": True}),
            ("TIFF", rgb, {"compression": "tiff_lzw"}),
            ("TIFF", Image.fromarray(rng.random((12, 16), np.float32)), {}),
            ("TIFF", rgb.convert("CMYK"), {"exif": exif.tobytes()})):
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        files.append((fmt, buf.getvalue()))
    png = files[3][1]
    extra = (png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * 200))
             + png_chunk(b"zTXt", b"note\x00\x00" + zlib.compress(b"hello" * 20))
             + png_chunk(b"tEXt", b"key\x00value"))
    files.append(("PNG", png[:33] + extra + png[33:]))  # after the 8-byte signature and IHDR
    return files


def mutate(data: bytes, rng: random.Random) -> bytes:
    """1 to 4 random edits: flipped bits, interesting values, inserted, deleted or repeated runs,
    truncation."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(len(out)) if out else 0
        op = rng.randrange(6)
        if op == 0:
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(out))
                out[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            value = rng.choice(INTERESTING)
            out[pos:pos + len(value)] = value
        elif op == 2:
            out[pos:pos] = rng.randbytes(rng.randint(1, 64))
        elif op == 3:
            del out[pos:pos + rng.randint(1, 64)]
        elif op == 4:
            run = out[pos:pos + rng.randint(1, 64)]
            out[pos:pos] = run * rng.randint(1, 16)
        else:
            del out[max(pos, 8):]
        if not out:
            out = bytearray(data[:8])
    return bytes(out)


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk CRC of a (possibly mutated) PNG; stops at the first chunk that does
    not fit."""
    out, pos = bytearray(data[:8]), 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        end = pos + 8 + length
        if end + 4 > len(data):
            break
        out += data[pos:end] + struct.pack(">I", zlib.crc32(data[pos + 4:end]))
        pos = end + 4
    return bytes(out + data[pos:])


def mutants(count: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """``count`` (format of the seed file, mutated bytes), the same for the same ``seed``."""
    rng = random.Random(seed)
    files = seed_files()
    for i in range(count):
        fmt, data = files[i % len(files)]
        data = mutate(data, rng)
        if fmt == "PNG" and rng.random() < 0.5:
            data = fix_png_crcs(data)
        yield fmt, data
