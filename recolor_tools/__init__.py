"""recolor: recolor images by predicting CIELAB a/b chroma for their lightness L."""

__version__ = "0.1.0"
