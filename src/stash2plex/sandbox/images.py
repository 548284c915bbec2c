"""Deterministic, real image bytes for the emulated Stash: covers, performer and studio images.

Standard library only. Every image is a valid baseline JPEG or PNG (decodable by any viewer),
different for every (kind, id, version), so a sync that compares content hashes sees a new
cover exactly when the emulated user changed it. The JPEG encoder only emits flat 8x8 blocks
(DC coefficients, no AC), which keeps it a few dozen lines while staying a genuine JPEG.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from functools import lru_cache

# Stash serves a built-in SVG when a scene has no cover. This is our own drawing of "no cover"
# (a film frame), not Stash's asset; what matters for the sync is its content type.
PLACEHOLDER_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 640 360" width="640" height="360">'
    b'<rect width="640" height="360" fill="#30404d"/>'
    b'<rect x="220" y="110" width="200" height="140" rx="12" fill="none" stroke="#8a9ba8" '
    b'stroke-width="10"/>'
    b'<circle cx="320" cy="180" r="36" fill="none" stroke="#8a9ba8" stroke-width="10"/>'
    b"</svg>\n"
)

SCENE_SIZE = (160, 96)  # width, height: multiples of 8 (whole JPEG blocks)
PERFORMER_SIZE = (64, 96)
STUDIO_SIZE = (96, 32)


def sniff_content_type(data: bytes) -> str:
    """The content type a server sniffing magic bytes would send (like Go's DetectContentType)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.lstrip().startswith((b"<svg", b"<?xml")):
        return "image/svg+xml"
    return "application/octet-stream"


@lru_cache(maxsize=4096)
def scene_cover(scene_id: int, version: int) -> bytes:
    """The cover of a scene at a cover version; every fifth one is a PNG, the rest JPEG.

    Encoding pixels in pure Python costs tens of milliseconds, which would dominate a sync of
    thousands of scenes; so each format is encoded once from a pattern picked by the version,
    and the scene and version are written into a comment (JPEG COM segment, PNG tEXt chunk).
    The bytes stay a valid image and differ per scene and version.
    """
    label = f"stash2plex sandbox scene {scene_id} cover {version}".encode()
    if (scene_id + version) % 5 == 0:
        return _with_png_text(_base_cover("png", version % 7), label)
    return _with_jpeg_comment(_base_cover("jpeg", version % 7), label)


@lru_cache(maxsize=16)
def _base_cover(kind: str, variant: int) -> bytes:
    rgb = _pattern("scene", variant, 1, *SCENE_SIZE)
    return encode_png(*SCENE_SIZE, rgb) if kind == "png" else encode_jpeg(*SCENE_SIZE, rgb)


def _with_jpeg_comment(jpeg: bytes, label: bytes) -> bytes:
    # A COM segment right after SOI: marker FFFE, 2-byte length including itself.
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(label) + 2) + label + jpeg[2:]


def _with_png_text(png: bytes, label: bytes) -> bytes:
    # A tEXt chunk right after IHDR (8-byte signature + 25-byte IHDR chunk).
    body = b"Comment\x00" + label
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + body) & 0xFFFFFFFF)
    return png[:33] + chunk + png[33:]


@lru_cache(maxsize=512)
def performer_image(performer_id: int, version: int = 1) -> bytes:
    """A performer's photo (JPEG)."""
    return encode_jpeg(
        *PERFORMER_SIZE, _pattern("performer", performer_id, version, *PERFORMER_SIZE)
    )


@lru_cache(maxsize=1)
def default_performer_image() -> bytes:
    """What Stash serves for a performer without a photo: a generated default PNG."""
    width, height = PERFORMER_SIZE
    grey = [(200, 200, 200)] * (width * height)
    return encode_png(width, height, grey)


@lru_cache(maxsize=256)
def studio_image(studio_id: int, version: int = 1) -> bytes:
    """A studio logo (PNG, as logos usually are)."""
    return encode_png(*STUDIO_SIZE, _pattern("studio", studio_id, version, *STUDIO_SIZE))


@lru_cache(maxsize=256)
def group_front_image(group_id: int, version: int = 1) -> bytes:
    """A group's front cover (JPEG, like a DVD cover)."""
    return encode_jpeg(*PERFORMER_SIZE, _pattern("group", group_id, version, *PERFORMER_SIZE))


STUDIO_PLACEHOLDER_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
    b'<rect x="8" y="20" width="48" height="28" rx="4" fill="none" stroke="#888"/></svg>'
)


# --------------------------------------------------------------------------- pixels
def _pattern(kind: str, entity_id: int, version: int, width: int, height: int) -> list[tuple]:
    """A diagonal two-colour gradient with a band, seeded by (kind, id, version)."""
    digest = hashlib.sha256(f"{kind}:{entity_id}:{version}".encode()).digest()
    start, end, band = digest[0:3], digest[3:6], digest[6:9]
    band_row = digest[9] % height
    pixels = []
    span = max(1, width + height - 2)
    for y in range(height):
        in_band = abs(y - band_row) < height // 10 + 1
        for x in range(width):
            if in_band:
                pixels.append(tuple(band))
                continue
            t = (x + y) / span
            pixels.append(tuple(int(a + (b - a) * t) for a, b in zip(start, end, strict=True)))
    return pixels


# --------------------------------------------------------------------------- PNG
def encode_png(width: int, height: int, rgb: list[tuple]) -> bytes:
    """An 8-bit RGB PNG (filter type 0 on every row)."""
    raw = bytearray()
    for y in range(height):
        raw.append(0)
        for pixel in rgb[y * width : (y + 1) * width]:
            raw.extend(pixel)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- JPEG
# The standard luminance DC table (ITU T.81 K.3): code lengths 1..16, then symbols 0..11.
_DC_BITS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
_DC_VALUES = tuple(range(12))
# An AC table holding only end-of-block: every block here is flat.
_AC_BITS = (1,) + (0,) * 15
_AC_VALUES = (0x00,)


def _huffman_codes(bits: tuple[int, ...], values: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """Canonical Huffman codes {symbol: (code, length)} from a DHT's counts and symbols."""
    codes: dict[int, tuple[int, int]] = {}
    code = 0
    index = 0
    for length, count in enumerate(bits, start=1):
        for _ in range(count):
            codes[values[index]] = (code, length)
            code += 1
            index += 1
        code <<= 1
    return codes


_DC_CODES = _huffman_codes(_DC_BITS, _DC_VALUES)
_EOB = _huffman_codes(_AC_BITS, _AC_VALUES)[0x00]


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.count = 0

    def write(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.count += length
        while self.count >= 8:
            self.count -= 8
            byte = (self.acc >> self.count) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:  # byte stuffing: 0xFF in entropy-coded data is followed by 0x00
                self.out.append(0x00)
        self.acc &= (1 << self.count) - 1

    def flush(self) -> bytes:
        if self.count:
            self.write((1 << (8 - self.count)) - 1, 8 - self.count)  # pad with 1-bits
        return bytes(self.out)


def encode_jpeg(width: int, height: int, rgb: list[tuple]) -> bytes:
    """A baseline YCbCr JPEG with no chroma subsampling; each 8x8 block is its average colour."""
    if width % 8 or height % 8:
        raise ValueError("width and height must be multiples of 8")
    writer = _BitWriter()
    predictors = [0, 0, 0]
    for by in range(0, height, 8):
        for bx in range(0, width, 8):
            sums = [0.0, 0.0, 0.0]
            for y in range(by, by + 8):
                for r, g, b in rgb[y * width + bx : y * width + bx + 8]:
                    sums[0] += 0.299 * r + 0.587 * g + 0.114 * b
                    sums[1] += 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
                    sums[2] += 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
            for component in range(3):
                # A flat block's DC coefficient is 8 * (level - 128); the quantiser is 1.
                dc = round(8 * (sums[component] / 64 - 128))
                diff = dc - predictors[component]
                predictors[component] = dc
                category = abs(diff).bit_length()
                writer.write(*_DC_CODES[category])
                if category:
                    writer.write(diff if diff >= 0 else diff - 1, category)
                writer.write(*_EOB)
    scan = writer.flush()

    def segment(marker: int, body: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body

    jfif = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    quant = b"\x00" + b"\x01" * 64
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"".join(
        bytes((component, 0x11, 0)) for component in (1, 2, 3)
    )
    huffman = (
        b"\x00"
        + bytes(_DC_BITS)
        + bytes(_DC_VALUES)
        + b"\x10"
        + bytes(_AC_BITS)
        + bytes(_AC_VALUES)
    )
    scan_header = b"\x03" + b"".join(bytes((c, 0x00)) for c in (1, 2, 3)) + b"\x00\x3f\x00"
    return (
        b"\xff\xd8"
        + segment(0xE0, jfif)
        + segment(0xDB, quant)
        + segment(0xC0, frame)
        + segment(0xC4, huffman)
        + segment(0xDA, scan_header)
        + scan
        + b"\xff\xd9"
    )
