"""Lab records from the tools' inputs: image files and record streams alike.

A tool that takes Lab (from-lab, quantize, rebalance-stats) accepts either: an image is read,
converted (:func:`~recolor_tools.color.samples_to_lab`) and named as its record would be; a
record stream yields its records. The format itself is :mod:`recolor_tools.records`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .errors import OutOfMemory, RecolorError
from .records import MAGIC, Record, check_finite, is_record_stream, iter_records, lab_record


def image_record(
    path: str, max_size: int | None = None, l_only: bool = False, name: str | None = None
) -> Record:
    """Read an image file and make its Lab record (shrunk to ``max_size`` if given), named
    ``name`` (default: the file's base name, ``stdin`` for ``-``)."""
    from .imageio import read_rgb
    from .imagemeta import ImageMeta

    meta = ImageMeta()
    # shrunk as it is read (a scan's float copy), else the samples as stored where they are sRGB
    rgb = read_rgb(path, meta, max_size=max_size, stored=not max_size)
    rec = _rgb_record(rgb, path, l_only, meta.to_json(path), name, meta.size)
    # what outputs made from the record must not replace: stdin's file too (`< a.png`), not a pipe
    st = os.stat(path) if path != "-" else os.fstat(0)
    if path != "-" or stat.S_ISREG(st.st_mode):
        rec.file = (st.st_dev, st.st_ino)
    return rec


def _rgb_record(
    rgb: np.ndarray,
    path: str,
    l_only: bool = False,
    source: dict | None = None,
    name: str | None = None,
    size: tuple[int, int] | None = None,
) -> Record:
    """The Lab record of ``rgb`` (float sRGB or samples as stored, read from ``path``, ``-`` for
    stdin), named ``name`` (default the file's base name); ``size`` is the image's before any
    shrinking (default ``rgb``'s); ``source`` as :attr:`Record.source`."""
    from .color import samples_to_lab
    from .inputs import input_name

    name = input_name(path) if name is None else name
    lab = samples_to_lab(rgb)
    return lab_record(name, lab, size or rgb.shape[:2], l_only, source)


def iter_lab_sources(
    paths: list[str], on_error: Callable[[RecolorError], None], roots: Sequence[Path] = ()
) -> Iterator[Record]:
    """Yield records from files that are record streams or images, in order.

    Each path (``-`` is stdin) is sniffed: a record stream yields all its records, except those
    holding NaN or infinity (:func:`check_finite`: reported, and the stream goes on); an image
    yields its Lab record, named :func:`~recolor_tools.inputs.input_name` below ``roots``. Each
    record's :attr:`~Record.origin` is set for the errors about it: ``path: name`` for a record
    of a stream file, ``path`` for an image file (None for stdin). A
    failure is passed to ``on_error`` and the next path is tried; a stream that breaks half-way
    keeps the records read before the break.
    """
    from .fileio import open_binary
    from .inputs import input_name

    for path in paths:
        try:
            stream = open_binary(path)
            try:
                # read, not peeked: a pipe's first read may hold fewer than 4 bytes; a stream
                # cut inside its magic is a truncated one
                head = stream.read(len(MAGIC))
                if is_record_stream(head) or 0 < len(head) < len(MAGIC) and MAGIC.startswith(head):
                    for rec in iter_records(stream, path, head):
                        rec.origin = None if path == "-" else f"{path}: {rec.name}"
                        try:
                            check_finite(rec)
                        except RecolorError as e:
                            on_error(e)  # that record only: the stream goes on
                            continue
                        yield rec
                else:
                    from .fileio import read_rest
                    from .imagehead import SNIFF_BYTES, is_image, other_format
                    from .imageio import decode_rgb
                    from .imagemeta import ImageMeta

                    # the start decides, before the rest is read (`yes |` grew without end)
                    start = head + stream.read(SNIFF_BYTES - len(head))
                    if not start:
                        raise RecolorError("empty input (no records)", path)
                    if not is_image(start):
                        raise RecolorError(
                            "neither a recolor record stream (bad magic) nor an image "
                            f"recolor reads ({other_format(start)})",
                            path,
                        )
                    data = read_rest(stream, start)
                    meta = ImageMeta()
                    rgb = decode_rgb(data, path, meta, stored=True)
                    name = input_name(path, roots)
                    rec = _rgb_record(rgb, path, source=meta.to_json(path), name=name)
                    rec.origin = None if path == "-" else path
                    yield rec
            finally:
                if path != "-":
                    stream.close()
        except RecolorError as e:
            if e.path is None:
                e.path = path
            on_error(e)
        except MemoryError:  # a header may promise arrays of any size that a pipe cannot check
            on_error(OutOfMemory(path))
