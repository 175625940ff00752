"""Pictures through outside renderers: SVG to PNG with CairoSVG, DOT to SVG with Graphviz.

Both are optional: without them `map -o svg` and `topology -o dot` still work, and asking
for PNG or for an SVG topology says what to install (exit 2).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ipam.errors import InvalidInput

CAIRO_HINT = ("needs CairoSVG and the cairo library: pip install cairosvg (Debian: apt-get "
              "install libcairo2); or use -o svg")
DOT_HINT = ("needs Graphviz's `dot`: apt-get install graphviz; or use -o dot and render it "
            "elsewhere")


def svg_to_png(svg: str) -> bytes:
    try:
        import cairosvg  # optional: only PNG output needs it
    except (ImportError, OSError) as exc:  # OSError: cairocffi finds no libcairo
        raise InvalidInput("--output", "png", f"{CAIRO_HINT} ({exc})") from None
    return cairosvg.svg2png(bytestring=svg.encode("utf-8"))


def dot_to_svg(dot: str) -> str:
    program = shutil.which("dot")
    if program is None:
        raise InvalidInput("--output", "svg", DOT_HINT)
    done = subprocess.run([program, "-Tsvg"], input=dot, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        # The DOT is ours: a failure here is a bug or a broken Graphviz, not the user's input.
        raise RuntimeError(f"dot -Tsvg failed: {done.stderr.strip()}")
    return done.stdout


def write_picture(path: str, data: str | bytes) -> None:
    """Write a picture (not secret, unlike rendered configurations: ordinary permissions)."""
    try:
        if isinstance(data, bytes):
            Path(path).write_bytes(data)
        else:
            Path(path).write_text(data, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput("--out", path, f"cannot be written: {exc.strerror}") from None
