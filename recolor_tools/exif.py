"""EXIF directories as recolor carries them from a source to its outputs: read with their text
intact (:func:`load_exif`), cut to the descriptive tags for a record (:func:`clean_exif`), and
written anew for an output (:func:`software_exif`: orientation 1, the output's size and colour
space, Software naming recolor). Pillow parses and serialises the TIFF structure (imported
on first use: only files that carry EXIF need it).

References
----------
.. [1] JEITA CP-3451C, Exif 2.3 (tag 274 Orientation, values 1-8; the Exif, GPS and
       Interoperability IFDs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:  # (Pillow is imported on first use)
    from PIL.Image import Exif

SOFTWARE = f"recolor {__version__}"
"""The EXIF Software tag (305) of every output that carries EXIF."""

# IFD0 tags carried from a source's EXIF: descriptive ones. Structural tags (strips, sizes,
# compression) describe the source's encoding, not the picture, and must not reach the output.
_IFD0_KEEP = frozenset(
    {270, 271, 272, 282, 283, 296, 305, 306, 315, 33432, 0x9C9B, 0x9C9C, 0x9C9D, 0x9C9E, 0x9C9F}
)
SUB_IFDS = (0x8769, 0x8825)  # Exif and GPS sub-directories, carried whole
ORIENTATION = 274
_INTEROP = 0xA005  # the Interoperability IFD, inside the Exif IFD
_EXIF_IFD = 0x8769
_COLOR_SPACE = 0xA001  # in the Exif IFD: 1 sRGB, 0xFFFF Uncalibrated
_PIXEL_DIMENSIONS = (0xA002, 0xA003)  # in the Exif IFD: the image's width and height
RESOLUTION = (282, 283, 296)  # IFD0: XResolution, YResolution, ResolutionUnit


def with_resolution(exif: Exif, dpi: tuple[float, float] | None) -> None:
    """Put a file's own resolution ``dpi`` (pixels per inch: its JFIF or pHYs, see
    :func:`recolor_tools.imagemeta.density`) into a Pillow ``Exif`` that states none, as
    XResolution, YResolution and ResolutionUnit 2 (inch): carried with the EXIF (a 600 dpi scan
    came back "72 dpi"), written back by :func:`software_exif`."""
    if dpi and RESOLUTION[0] not in exif:
        exif[RESOLUTION[0]], exif[RESOLUTION[1]], exif[RESOLUTION[2]] = (*dpi, 2)


def resolution(exif: Exif) -> tuple[float, float] | None:
    """Pixels per inch that a Pillow ``Exif`` states (ResolutionUnit 2 inch, 3 cm; 1 or none:
    no absolute unit), for an output's own field (PNG pHYs, JFIF density)."""
    try:
        x, y = float(exif[RESOLUTION[0]]), float(exif[RESOLUTION[1]])
        per_inch = {2: 1.0, 3: 2.54}.get(int(exif.get(RESOLUTION[2], 2)))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return (x * per_inch, y * per_inch) if per_inch and x > 0 and y > 0 else None


def clean_exif(exif: Exif) -> bytes | None:
    """Descriptive IFD0 tags and the sub-IFDs of a Pillow ``Exif``, orientation 1, as TIFF bytes."""
    from PIL import Image

    out = Image.Exif()
    for tag, value in exif.items():
        if tag in _IFD0_KEEP:
            out[tag] = value
    for tag, sub in sub_ifds(exif).items():
        out.get_ifd(tag).update(sub)
    if not len(out) and not any(out.get_ifd(t) for t in SUB_IFDS):
        return None
    out[ORIENTATION] = 1
    try:
        return out.tobytes()[6:]  # drop b"Exif\0\0"
    except Exception:  # a tag Pillow cannot write back: carry none rather than fail
        return None


def sub_ifds(exif: Exif) -> dict[int, dict]:
    """The Exif and GPS sub-IFDs of a Pillow ``Exif`` as dicts, ready to be written anew; the
    Exif IFD's Interoperability IFD (0xA005: R98 sRGB or R03 Adobe RGB) nested in it as a dict,
    since copied as the number it is read as, it was an offset into the source file."""
    subs = {}
    for tag in SUB_IFDS:
        sub = dict(exif.get_ifd(tag)) if tag in exif else {}
        if _INTEROP in sub:
            interop = dict(exif.get_ifd(_INTEROP))
            if interop:
                sub[_INTEROP] = interop
            else:
                del sub[_INTEROP]
        if sub:
            subs[tag] = sub
    return subs


class _FileText(str):
    """EXIF text as Pillow reads it (each byte a latin-1 character) that Pillow writes back as
    the same bytes: it encodes text as ASCII with "?" for every other byte, so the UTF-8 that
    cameras and editors write (``© 2024 Zoë``) came back as ``?? 2024 Zo??``. Still a ``str``,
    so Pillow writes it as text (type ASCII) also where it does not know the tag."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return str.encode(self, "latin-1")


def load_exif(raw: bytes) -> Exif:
    """A Pillow ``Exif`` of the EXIF ``raw`` (TIFF bytes, ``Exif\\0\\0`` in front or not) whose
    text values (:class:`_FileText`) are written back byte for byte."""
    from PIL import Image

    exif = Image.Exif()
    exif.load(raw)
    places = [exif]  # (asked for when absent, Pillow would write an empty directory)
    places += [exif.get_ifd(t) for t in SUB_IFDS if t in exif]
    if _EXIF_IFD in exif and _INTEROP in exif.get_ifd(_EXIF_IFD):
        places.append(exif.get_ifd(_INTEROP))
    for tags in places:
        for tag, value in list(tags.items()):
            if isinstance(value, str):
                tags[tag] = _FileText(value)
    return exif


def software_exif(
    exif: bytes | None, size: tuple[int, int], srgb: bool
) -> tuple[bytes, tuple[float, float] | None]:
    """The EXIF to write: the source's (orientation 1) or a new one, Software naming recolor;
    the Exif IFD's PixelXDimension and PixelYDimension made the output's ``size`` (W, H), and
    for an ``srgb`` output its ColorSpace 1 (sRGB) and InteropIndex R98 (DCF's sRGB), where the
    source said Uncalibrated or R03 (Adobe RGB): readers that go by EXIF took an sRGB output
    turned or shrunk for the source's colours and size. Also the resolution it states, in
    pixels per inch (:func:`resolution`)."""
    from PIL import Image

    out = Image.Exif()
    try:
        if exif:
            out = load_exif(exif)  # a record's EXIF is whatever its header held
            subs = sub_ifds(out)
            said = subs.get(_EXIF_IFD, {})
            said.update({t: v for t, v in zip(_PIXEL_DIMENSIONS, size, strict=True) if t in said})
            if srgb and _COLOR_SPACE in said:
                said[_COLOR_SPACE] = 1
            if srgb and 1 in said.get(_INTEROP, {}):
                said[_INTEROP][1] = "R98"
            if said:  # written anew: the Interoperability IFD a dict, not an offset
                out.get_ifd(_EXIF_IFD).clear()
                out.get_ifd(_EXIF_IFD).update(said)
        out[305] = SOFTWARE
        out[ORIENTATION] = 1
        return out.tobytes()[6:], resolution(out)
    except Exception:  # a source EXIF Pillow cannot read or write back: recolor's own only
        fresh = Image.Exif()
        fresh[305], fresh[ORIENTATION] = SOFTWARE, 1
        return fresh.tobytes()[6:], None
