"""The app icons, drawn in pure Python (zlib + struct PNG writer): a white price tag on the accent colour."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

ACCENT = (0x2F, 0x80, 0xED)
COLOR_SIZE = 192
OUTLINE_SIZE = 32
SAMPLES = 4  # 4x4 supersampling for smooth edges
Coverage = Callable[[float, float], bool]


def png(width: int, height: int, rows: list[bytes], alpha: bool) -> bytes:
    """Encode 8-bit RGB or RGBA scanlines as a PNG file."""
    color_type = 6 if alpha else 2
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 on every line
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def tag_shape(hole: bool = True) -> Coverage:
    """A price tag in unit coordinates (0..1): pointed on the left, rounded body, punched hole."""

    def inside(x: float, y: float) -> bool:
        # Body: rectangle x in [0.36, 0.82], y in [0.28, 0.72]; point: triangle to (0.16, 0.5).
        in_body = 0.36 <= x <= 0.82 and 0.28 <= y <= 0.72
        in_point = 0.16 <= x < 0.36 and abs(y - 0.5) <= (x - 0.16) / 0.20 * 0.22
        if not (in_body or in_point):
            return False
        return not (hole and (x - 0.34) ** 2 + (y - 0.5) ** 2 <= 0.055**2)

    return inside


def tag_outline() -> Coverage:
    """The tag drawn as a white outline (for the 32×32 monochrome icon)."""
    outer, inner = tag_shape(hole=False), _shrunk(tag_shape(hole=False), 0.09)

    def inside(x: float, y: float) -> bool:
        ring = outer(x, y) and not inner(x, y)
        dot = (x - 0.38) ** 2 + (y - 0.5) ** 2 <= 0.06**2
        return ring or dot

    return inside


def _shrunk(shape: Coverage, margin: float) -> Coverage:
    """Points whose whole neighbourhood of radius `margin` is inside `shape` (eight-direction test)."""
    offsets = [(margin, 0.0), (-margin, 0.0), (0.0, margin), (0.0, -margin)]
    offsets += [(dx * 0.7071, dy * 0.7071) for dx in (margin, -margin) for dy in (margin, -margin)]
    return lambda x, y: shape(x, y) and all(shape(x + dx, y + dy) for dx, dy in offsets)


def coverage(shape: Coverage, size: int) -> list[list[float]]:
    """Fraction of each pixel covered by `shape`, by SAMPLES×SAMPLES supersampling."""
    step = 1.0 / (size * SAMPLES)
    grid = []
    for py in range(size):
        row = []
        for px in range(size):
            hits = sum(
                shape((px * SAMPLES + sx + 0.5) * step, (py * SAMPLES + sy + 0.5) * step)
                for sy in range(SAMPLES)
                for sx in range(SAMPLES)
            )
            row.append(hits / (SAMPLES * SAMPLES))
        grid.append(row)
    return grid


def color_icon(size: int = COLOR_SIZE) -> bytes:
    """Opaque RGB icon: white tag blended onto the accent colour."""
    rows = []
    for line in coverage(tag_shape(), size):
        row = bytearray()
        for cover in line:
            row.extend(round(c + (255 - c) * cover) for c in ACCENT)
        rows.append(bytes(row))
    return png(size, size, rows, alpha=False)


def outline_icon(size: int = OUTLINE_SIZE) -> bytes:
    """RGBA icon: white outline on a transparent background (only the alpha varies)."""
    rows = []
    for line in coverage(tag_outline(), size):
        row = bytearray()
        for cover in line:
            row.extend((255, 255, 255, round(255 * cover)))
        rows.append(bytes(row))
    return png(size, size, rows, alpha=True)


def write_icons(folder: Path) -> tuple[Path, Path]:
    """Write color.png and outline.png into `folder`."""
    color, outline = folder / "color.png", folder / "outline.png"
    color.write_bytes(color_icon())
    outline.write_bytes(outline_icon())
    return color, outline


if __name__ == "__main__":
    write_icons(Path(__file__).resolve().parent)
