"""Colour classes on the a/b plane: class sets, soft/hard encoding and annealed-mean decoding.

Colorization as classification (Zhang et al. [1]) quantises the a/b plane of CIELAB into Q
classes, trains a network to predict a distribution over them per pixel, and decodes that
distribution back to one a/b value. This package holds the numerical part of that scheme, one
module a job:

- :mod:`.classes`: a *class set* is a (Q, 2) float32 array of a/b class centres (OpenCV float
  Lab, a/b in about [-128, 127]): :func:`gamut_classes`, :func:`data_classes`, their files
  (:func:`save_classes`, :func:`load_classes`) and validation (:func:`check_classes`);
- :mod:`.encode`: :func:`soft_encode` (k nearest centres with Gaussian weights: the training
  target) and :func:`hard_encode` (nearest centre), exact, on numba kernels; :mod:`.search`
  builds the tables they search with;
- :mod:`.decode`: :func:`annealed_mean` and :func:`mode` (distribution -> a/b);
- :mod:`.targets`: :func:`encode_record` and :func:`preview_rgb` for ``recolor quantize``;
- :mod:`.lut3d`: tetrahedral interpolation in a 3-D colour table, for colour profiles
  (:mod:`recolor_tools.colorprofile`): no colour-class job, but a numba kernel, and every kernel
  lives here, in one cache;
- :mod:`.jit`: numba set-up: the on-disk cache of compiled kernels (a writable directory even
  when the package's is not), the threads large calls run on, two intrinsics.

Kernels compile on the first call that needs them (a tool compiles only what it calls) and are
cached on disk. They release the GIL and use no numba threading layer of their own, so they work
in forked workers (torch DataLoader, multiprocessing) and from several threads at once. Nothing
here imports torch: pass network output as a numpy array (``tensor.numpy()``).

References
----------
.. [1] R. Zhang, P. Isola, A. A. Efros, "Colorful Image Colorization", ECCV 2016,
       arXiv:1603.08511. Section 2.1 (quantisation, soft encoding) and 2.3 (annealed mean).
"""

from __future__ import annotations

from .classes import (
    CLASSES_FORMAT,
    CLASSES_VERSION,
    MAX_CLASSES,
    WrongFormat,
    check_ab,
    check_class_file,
    check_classes,
    check_grid,
    data_classes,
    gamut_classes,
    load_classes,
    read_npz,
    read_npz_bytes,
    save_classes,
)
from .decode import annealed_mean, mode
from .encode import hard_encode, soft_encode
from .targets import encode_record, preview_rgb

__all__ = [
    "CLASSES_FORMAT",
    "CLASSES_VERSION",
    "MAX_CLASSES",
    "annealed_mean",
    "check_ab",
    "check_classes",
    "check_grid",
    "data_classes",
    "encode_record",
    "gamut_classes",
    "hard_encode",
    "load_classes",
    "mode",
    "preview_rgb",
    "WrongFormat",
    "read_npz",
    "check_class_file",
    "read_npz_bytes",
    "save_classes",
    "soft_encode",
]
