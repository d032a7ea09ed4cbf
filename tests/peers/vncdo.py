#!/usr/bin/env python3
"""vncdotool's `vncdo` command line, with the screen canvas sized from ServerInit.

vncdotool 1.4.2 uses the first rectangle of the first FramebufferUpdate as the whole screen and
only ever grows it to fit later rectangles. A server that paints the screen in several rectangles
(TigerVNC's Xvnc does) therefore yields captures of the wrong size with misplaced content. Here the
canvas starts as a black image of the size announced in ServerInit, so every rectangle lands at its
own position and `capture` always has the server's screen size.

Usage and exit codes are vncdo's: 0 success, 3 authentication failed, 10 connection failed,
11 connection lost (also: password required but none given), 2 usage errors.
"""

import sys

from PIL import Image
from vncdotool import client, command

_update_rectangle = client.VNCDoToolClient.updateRectangle


def _update_rectangle_on_canvas(self, x, y, width, height, data):
    if self.screen is None and self.width and self.height:
        self.screen = Image.new("RGB", (self.width, self.height), "black")
    _update_rectangle(self, x, y, width, height, data)


client.VNCDoToolClient.updateRectangle = _update_rectangle_on_canvas

if __name__ == "__main__":
    command.vncdo()
