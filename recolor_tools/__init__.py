"""recolor: recolor images by predicting CIELAB a/b chroma for their lightness L."""

import contextlib as _contextlib
import os as _os

from .errors import RecolorError as _RecolorError
from .imagehead import max_pixels as _max_pixels

__version__ = "0.1.0"

# OpenCV reads its own pixel limit (2**30) once, where cv2 is first imported, which modules of
# every tool do: set before any of them, or a raised RECOLOR_MAX_PIXELS was capped there (a
# valid larger image said to be "corrupt"). Ours is checked on the header before OpenCV reads.
with _contextlib.suppress(_RecolorError):
    _os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(max(1 << 30, _max_pixels())))


def run() -> None:
    """The ``recolor`` command's entry point (:func:`recolor_tools.cli.main`). Ctrl-C while the
    tools load (typer, numpy, OpenCV: a few tenths of a second) printed a traceback; it ends
    with 130 as at any other moment."""
    try:
        from .cli import run as run_cli
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    run_cli()
