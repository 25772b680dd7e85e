"""recolor: recolor images by predicting CIELAB a/b chroma for their lightness L."""

__version__ = "0.1.0"


def run() -> None:
    """The ``recolor`` command's entry point (:func:`recolor_tools.cli.main`). Ctrl-C while the
    tools load (typer, numpy, OpenCV: a few tenths of a second) printed a traceback; it ends
    with 130 as at any other moment."""
    try:
        from .cli import run as run_cli
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    run_cli()
