#!/usr/bin/env python3
"""Saves a PNG screenshot of an X display: xgrab.py :DISPLAY OUT.png (uses Pillow's ImageGrab)."""

import sys

from PIL import ImageGrab

if len(sys.argv) != 3:
    sys.exit("usage: xgrab.py :DISPLAY OUT.png")
ImageGrab.grab(xdisplay=sys.argv[1]).save(sys.argv[2], "PNG")
