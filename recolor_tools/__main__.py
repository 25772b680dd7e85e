from recolor_tools.cli import run

run()
