#!/usr/bin/env python3
"""Checks the desktop example's screenshot without trusting the program that wrote it.

usage: check_png.py FILE.png WIDTH HEIGHT

Decodes the PNG with the standard library (zlib + struct: 8-bit RGB or RGBA, not
interlaced), then checks that its size is WIDTH x HEIGHT, that it is not blank (no single
colour covers more than 97% of it) and that the heatmap region (the window's right part,
below its heading) holds at least 6 distinct colours that each fill 100 pixels or more:
heatmap cells are flat blocks, so a heatmap with data has many, an empty one has one.
Exits 0 when all hold, 1 with the reason otherwise.
"""

import struct
import sys
import zlib
from collections import Counter

MIN_COLOURS = 6
MIN_PIXELS = 100


def decode(path):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB/RGBA PNG."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    bpp = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
            elif kind != 0:
                raise ValueError(f"bad filter type {kind} in row {y}")
        rows.append([tuple(line[x * bpp : x * bpp + 3]) for x in range(width)])
        prev = line
    return width, height, rows


def check(path, width, height):
    """The reason the image fails, or None."""
    w, h, rows = decode(path)
    if (w, h) != (width, height):
        return f"size {w}x{h}, expected {width}x{height}"
    everything = Counter(px for row in rows for px in row)
    colour, count = everything.most_common(1)[0]
    if count > 0.97 * w * h:
        return f"blank: colour {colour} covers {100 * count / (w * h):.1f}% of the image"
    # The heatmap: right of the 360-point prompt panel, below the heading and stats line.
    region = Counter(px for row in rows[h // 5 : h - 8] for px in row[int(w * 0.4) : w - 8])
    blocks = [c for c, n in region.items() if n >= MIN_PIXELS]
    if len(blocks) < MIN_COLOURS:
        return f"heatmap region has {len(blocks)} colours over {MIN_PIXELS} pixels, want {MIN_COLOURS}"
    return None


def main():
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    path, width, height = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    try:
        reason = check(path, width, height)
    except (OSError, ValueError, zlib.error) as e:
        reason = str(e)
    if reason:
        print(f"{path}: FAIL: {reason}", file=sys.stderr)
        return 1
    print(f"{path}: ok ({width}x{height}, not blank, heatmap has colours)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
