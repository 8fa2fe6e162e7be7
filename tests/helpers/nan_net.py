"""A backbone that turns its logits into NaN after a number of training forward passes (tests only)."""

from lplgrad.nets import SmallCNN


class NaNAfter(SmallCNN):
    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 4, after: int = 6) -> None:
        super().__init__(num_classes, in_channels, width)
        self.after, self.calls = after, 0

    def forward(self, x):
        logits, feats = super().forward(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                logits = logits * float("nan")
        return logits, feats
