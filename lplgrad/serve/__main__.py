"""``python -m lplgrad.serve``: a Label Studio ML backend (docs/labeling.md)."""

from lplgrad.serve.cli import cli_main

if __name__ == "__main__":
    cli_main()
