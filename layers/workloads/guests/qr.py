"""The entry pass as a QR code, with `segno` (pure Python, SVG and PNG without Pillow), imported
on the first pass shown: only the QR route loads it."""

from __future__ import annotations

import io
from typing import Literal

SCALE = 8  # pixels per module in a PNG, user units in an SVG
BORDER = 4  # the quiet zone the QR standard asks for


def render(text: str, kind: Literal["svg", "png"] = "svg") -> tuple[str, str | bytes]:
    """(content type, body): an SVG document as text, or PNG bytes."""
    import segno

    code = segno.make_qr(text, error="m")
    buffer = io.BytesIO()
    if kind == "png":
        code.save(buffer, kind="png", scale=SCALE, border=BORDER)
        return "image/png", buffer.getvalue()
    code.save(buffer, kind="svg", scale=SCALE, border=BORDER, xmldecl=False, title="Entry pass")
    return "image/svg+xml", buffer.getvalue().decode()
