"""``python -m recolor_tools``: the same as the ``recolor`` command."""

from recolor_tools import run

if __name__ == "__main__":
    run()
