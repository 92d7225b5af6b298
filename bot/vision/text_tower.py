"""CLIP's and SigLIP's text towers as one loop over their modules: the text embedding every
`!find` waits for.

transformers' text models wrap each call in a mask builder, an attention dispatcher and output
records, and run the query, key and value projections as three calls. Here the same weights
run with none of that, the three projections as one call, and attention through SDPA. The
maths is the model's: on the full-size CLIP, float16-packed weights, the embeddings equal
transformers' own over the same packed weights, bitwise, and a 9-token query took 19 ms
against 25 on the 2-core AVX2 CPU (README, Performance). Tests: tests/test_text_tower.py.

On a CPU it runs compiled by TorchScript (bot/vision/kernels.py, `compiled`), equal to the bit:
its operators then run one after another without Python between them, so without waiting for
the interpreter's lock. With another thread busy in Python, as the event loop is under load, a
CLIP query took 350-1,900 ms from Python against 31-35 compiled (medians, Intel Xeon); alone,
11-16 ms against 10-11. A full-size SigLIP query (64 tokens, always) took 2.3 s from
transformers' module against 295 ms compiled; alone, 85 against 74 (the rest of the 295 is
arithmetic the busy thread's core no longer does).

CLIP: a padded batch needs no padding mask: the tokenizer pads on the right (preprocess_texts
makes sure), after each text's end token, and causal attention never looks ahead, so the end
token's state, the one that is pooled, is the same with or without the padding. SigLIP was
trained on texts padded to its full length, attending to all of it without a mask, and pools
the last position: fed exactly so.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional as F
from transformers import CLIPModel, SiglipModel
from transformers.activations import GELUTanh
from transformers.models.clip.modeling_clip import CLIPEncoderLayer
from transformers.models.siglip.modeling_siglip import SiglipEncoderLayer

from bot.vision.layers import linear
from bot.vision.packed import Kind


class TextTower(nn.Module):
    """Takes the text model (and CLIP's text projection) over from `model`, which no longer
    has them, so their weights are held once. Its norms and embeddings stay registered modules,
    so that `own_memory` reaches them; the linear layers are `linear`s (bot/vision/layers.py).
    Written for TorchScript (`compiled`), which runs it without Python between operators."""

    def __init__(self, model: CLIPModel | SiglipModel, packed: Kind | None) -> None:
        super().__init__()
        text = model.text_model
        self.siglip = isinstance(model, SiglipModel)
        self.tokens = text.embeddings.token_embedding
        self.places = text.embeddings.position_embedding
        self.final_norm = text.final_layer_norm
        causal = not self.siglip
        self.layers = nn.ModuleList(Block(block, packed, causal) for block in text.encoder.layers)
        # Packed, nothing here holds the float32 linear weights: they go with the model's.
        if self.siglip:
            self.projection = linear(text.head, packed=packed)
            self.eos_token_id = -1  # pools the last position instead
            del model.text_model
        else:
            self.projection = linear(model.text_projection, packed=packed)
            self.eos_token_id = int(text.eos_token_id)
            del model.text_model, model.text_projection

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The projected text features of `input_ids` [texts, tokens], right-padded."""
        hidden = self.tokens(input_ids) + self.places.weight[: input_ids.shape[1]]
        for layer in self.layers:
            hidden = layer(hidden)
        hidden = self.final_norm(hidden)
        if self.siglip:
            return self.projection(hidden[:, -1])
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        return self.projection(hidden[rows, self._end_positions(input_ids)])

    def _end_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Where each text's end token is, found as transformers finds it: checkpoints saved
        before its fix to `eos_token_id` (the released OpenAI ones among them) say 2 and pool
        the highest token id, which is the end token in CLIP's vocabulary."""
        ids = input_ids.to(torch.int)
        if self.eos_token_id == 2:
            return ids.argmax(dim=-1)
        return (ids == self.eos_token_id).int().argmax(dim=-1)


class Block(nn.Module):
    """One encoder layer: self-attention (`causal` for CLIP), then the feed-forward layers."""

    def __init__(
        self, block: CLIPEncoderLayer | SiglipEncoderLayer, packed: Kind | None, causal: bool
    ) -> None:
        super().__init__()
        attention, mlp = block.self_attn, block.mlp
        self.heads = int(attention.num_heads)
        self.scale = float(attention.scale)
        self.causal = causal
        self.qkv = linear(attention.q_proj, attention.k_proj, attention.v_proj, packed=packed)
        self.out = linear(attention.out_proj, packed=packed)
        self.up = linear(mlp.fc1, packed=packed)
        self.down = linear(mlp.fc2, packed=packed)
        self.activation = scriptable(mlp.activation_fn)
        self.norm1 = block.layer_norm1
        self.norm2 = block.layer_norm2

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        texts, length = hidden.shape[0], hidden.shape[1]
        qkv = self.qkv(self.norm1(hidden)).view(texts, length, 3, self.heads, -1)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # query, key, value (indexed: TorchScript cannot unpack)
        context = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], is_causal=self.causal, scale=self.scale
        )
        hidden = hidden + self.out(context.transpose(1, 2).reshape(texts, length, -1))
        return hidden + self.down(self.activation(self.up(self.norm2(hidden))))


class TanhGelu(nn.Module):
    """SigLIP's activation, as transformers' `GELUTanh` computes it by default; that one holds
    a `functools.partial`, which TorchScript cannot compile."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


def scriptable(activation: nn.Module) -> nn.Module:
    """`activation`, or the same function as a module TorchScript can compile. Another kind
    stays as it is: compiling the tower then fails, and it runs as Python (`compiled`)."""
    if type(activation) is GELUTanh and isinstance(activation.act, functools.partial):
        return TanhGelu()
    return activation
