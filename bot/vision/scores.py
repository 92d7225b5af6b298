"""What a text query's score means, by the search model's family.

CLIP's score is the cosine between the query's and the picture's embeddings: only its order
means something, so it is shown as it is, with 2 decimals. SigLIP was trained to give each
image-text pair on its own a probability that they match, sigmoid(scale x cosine + bias) with
the checkpoint's learned scale and bias, so it is shown as that probability, and a low one
honestly says "no good match". Either way the index stores and ranks by cosine (the sigmoid
keeps the order); image-to-image scores are always cosines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# WEAK_MATCH_BELOW's default, on the number shown: CLIP ViT-B/32's cosine for a text that fits
# a photo is rarely above 0.3, and SigLIP's probability for a fitting pair is well above 5%.
WEAK_BELOW = {"clip": 0.2, "siglip": 0.05}


@dataclass(frozen=True)
class TextScores:
    family: str  # a checkpoint's model_type: "clip" or "siglip"
    scale: float = 1.0
    bias: float = 0.0

    @property
    def probability(self) -> bool:
        return self.family == "siglip"

    @property
    def weak_below(self) -> float:
        return WEAK_BELOW[self.family]

    def shown(self, cosine: float) -> float:
        """The number a text query's result shows for a picture's cosine with the query."""
        if not self.probability:
            return cosine
        return 1.0 / (1.0 + math.exp(-(self.scale * cosine + self.bias)))

    def text(self, shown: float) -> str:
        if not self.probability:
            return f"{round(shown, 2) + 0.0:.2f}"  # (+ 0.0: never "-0.00")
        return "<1%" if shown < 0.01 else f"{shown:.0%}"

    def weak(self, shown: float, below: float) -> bool:
        """Below the line as the number reads: "0.20" is not below 0.2, whatever follows."""
        text = self.text(shown)
        if not self.probability:
            return float(text) < below
        return text == "<1%" or float(text.rstrip("%")) / 100 < below


COSINE = TextScores("clip")  # how image-to-image scores read, whatever the family
