"""``python -m lplgrad.label``: label your own images with active learning (docs/labeling.md)."""

from lplgrad.labeling.cli import cli_main

if __name__ == "__main__":
    cli_main()
