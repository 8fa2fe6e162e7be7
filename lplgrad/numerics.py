"""How float32 arithmetic runs on an NVIDIA GPU: TF32 for matrix products and convolutions.

TF32 keeps float32's range with a 10-bit mantissa and runs matrix products on the tensor cores
of Ampere and later GPUs. PyTorch's defaults, which lplgrad keeps: matrix products in full
float32 (``torch.set_float32_matmul_precision("highest")``), cuDNN convolutions in TF32
(``torch.backends.cudnn.allow_tf32 = True``). On a CPU neither setting changes anything.

cuDNN's benchmark mode (each convolution's fastest algorithm timed on the first batch of each
shape) is Lightning's own ``--trainer.benchmark true``; it is off unless asked for.

    python -m lplgrad fit --config configs/cifar10.yaml --math.matmul_precision high --trainer.benchmark true
"""

from __future__ import annotations

from typing import Literal

import torch

MatmulPrecision = Literal["highest", "high", "medium"]


class MathModes:
    """The TF32 settings of a run (``--math.*``).

    Args:
        matmul_precision: float32 matrix products: ``highest`` (full float32), ``high`` (TF32,
            or bf16x3 where TF32 is missing) or ``medium`` (bf16).
        cudnn_tf32: cuDNN convolutions may use TF32.
    """

    def __init__(self, matmul_precision: MatmulPrecision = "highest", cudnn_tf32: bool = True) -> None:
        self.matmul_precision, self.cudnn_tf32 = matmul_precision, cudnn_tf32

    def apply(self) -> None:
        """Set them for this process (each DDP process parses the command line and sets its own)."""
        torch.set_float32_matmul_precision(self.matmul_precision)
        torch.backends.cudnn.allow_tf32 = self.cudnn_tf32

    def __repr__(self) -> str:
        return f"MathModes(matmul_precision={self.matmul_precision!r}, cudnn_tf32={self.cudnn_tf32})"
