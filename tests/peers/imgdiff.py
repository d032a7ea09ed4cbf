#!/usr/bin/env python3
"""Compares two images of the same size: imgdiff.py A.png B.png

Prints the fraction (0.0 to 1.0) of pixels whose RGB values differ. Exits with 2 when the images
cannot be read or differ in size."""

import sys

from PIL import Image, ImageChops

if len(sys.argv) != 3:
    sys.exit("usage: imgdiff.py A.png B.png")
try:
    a = Image.open(sys.argv[1]).convert("RGB")
    b = Image.open(sys.argv[2]).convert("RGB")
except OSError as e:
    print(f"imgdiff: {e}", file=sys.stderr)
    sys.exit(2)
if a.size != b.size:
    print(f"imgdiff: sizes differ: {a.size} vs {b.size}", file=sys.stderr)
    sys.exit(2)
# A pixel counts as different when any of its channels differs.
r, g, bl = ImageChops.difference(a, b).split()
changed = ImageChops.lighter(ImageChops.lighter(r, g), bl).point(lambda v: 255 if v else 0)
print(changed.histogram()[255] / (a.size[0] * a.size[1]))
