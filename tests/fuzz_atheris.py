"""Coverage-guided fuzzing (atheris, libFuzzer) of the two readers of untrusted bytes, the record
reader and the image-reading path: whatever the bytes, nothing escapes but RecolorError.

On demand only (``make fuzz``, after the hypothesis fuzz tests; CI runs those, 300 cases each):
``python tests/fuzz_atheris.py -runs=100000 [CORPUS_DIR]``. libFuzzer writes an input that
crashes as ``crash-*``; keep it as an ``@example`` in tests/test_fuzz.py.
"""

from __future__ import annotations

import contextlib
import io
import sys

import atheris

with atheris.instrument_imports():
    from recolor_tools.errors import RecolorError
    from recolor_tools.imageio import decode_rgb
    from recolor_tools.records import check_finite, iter_records


def one_input(data: bytes) -> None:
    with contextlib.suppress(RecolorError):
        for rec in iter_records(io.BytesIO(data), "<fuzz>"):
            check_finite(rec)
    with contextlib.suppress(RecolorError):
        decode_rgb(data, "<fuzz>")


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
