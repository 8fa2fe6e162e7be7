"""``python -m lplgrad.export``: a labeling round's network as TorchScript and ONNX, checked (docs/labeling.md)."""

from lplgrad.labeling.export import cli_main

if __name__ == "__main__":
    cli_main()
