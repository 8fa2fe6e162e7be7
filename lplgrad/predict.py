"""``python -m lplgrad.predict``: classify a folder of images with a labeling round's network (docs/labeling.md)."""

from lplgrad.labeling.predict import cli_main

if __name__ == "__main__":
    cli_main()
