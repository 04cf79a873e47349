"""Headless Chromium for tests: a page's screenshot, and the screenshot's pixels.

Chromium is Debian's (``apt-get install chromium``). A test that needs it fails, with
that line, when it is missing: a browser check that skips itself passes by not running.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

#: Flags that work in a container: no sandbox, GPU, network services or first-run UI.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def find_chromium() -> str:
    """The Chromium executable; fails the calling test when there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is not installed: apt-get install chromium", pytrace=False)
    return found


def rendered_dom(
    url: str, profile: Path, size: tuple[int, int] = (1600, 1000), *, budget_ms: int = 20_000
) -> str:
    """The DOM of ``url`` after ``budget_ms`` of virtual time for its scripts (and the
    requests they make), from headless Chromium with a fresh ``profile`` folder."""
    page = subprocess.run(
        [
            find_chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert page.returncode == 0, page.stderr[-2000:]
    return page.stdout


def screenshot(
    url: str,
    png: Path,
    size: tuple[int, int] = (1200, 900),
    *,
    budget_ms: int = 10_000,
    timeout: float = 120,
) -> Path:
    """Screenshot ``url`` (``file://`` or ``http://``) at ``size`` (width, height) into
    ``png``, after ``budget_ms`` of virtual time for its scripts; returns ``png``.

    The browser profile is a fresh folder beside ``png``.
    """
    png = Path(png)
    profile = png.with_name(png.stem + "-profile")
    done = subprocess.run(
        [
            find_chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={png}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]
    return png


def png_pixels(png: Path) -> np.ndarray:
    """The pixels of an 8-bit RGB or RGBA PNG (as Chromium writes them), shape
    ``(height, width, channels)``, dtype uint8. Decoded here: no imaging library."""
    data = Path(png).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and not interlace, f"unsupported PNG {header}"
    channels = 3 if color == 2 else 4
    rows = np.frombuffer(zlib.decompress(b"".join(chunks)), np.uint8)
    rows = rows.reshape(height, 1 + width * channels)
    out = np.empty((height, width * channels), np.uint8)
    above = np.zeros(width * channels, np.int64)
    for y in range(height):
        out[y] = above = _unfilter(rows[y, 0], rows[y, 1:].astype(np.int64), above, channels)
    return out.reshape(height, width, channels)


def _unfilter(kind: int, row: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """One scanline undone from its PNG filter (None, Sub, Up, Average, Paeth)."""
    if kind == 0:
        return row
    if kind == 1:  # each byte adds the byte one pixel left: a running sum per channel
        return np.cumsum(row.reshape(-1, bpp), axis=0).reshape(-1) % 256
    if kind == 2:
        return (row + above) % 256
    # Average and Paeth depend on the byte just decoded to their left: a loop.
    raw, up, cur = row.tolist(), above.tolist(), [0] * len(row)
    for i, value in enumerate(raw):
        left = cur[i - bpp] if i >= bpp else 0
        if kind == 3:
            cur[i] = (value + ((left + up[i]) >> 1)) & 255
            continue
        corner = up[i - bpp] if i >= bpp else 0
        guess = left + up[i] - corner
        pa, pb, pc = abs(guess - left), abs(guess - up[i]), abs(guess - corner)
        nearest = left if pa <= pb and pa <= pc else up[i] if pb <= pc else corner
        cur[i] = (value + nearest) & 255
    return np.array(cur, np.int64)
