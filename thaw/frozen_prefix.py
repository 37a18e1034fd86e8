"""The frozen lower part of a partly unfrozen encoder, run once per row instead of once
per step.

When a rung trains only the top blocks (the partial rung), the embeddings and the blocks
below the lowest trained one give a row the same hidden states in every epoch.
``FrozenPrefix.compute`` runs them once over the rows, in eval mode (no dropout), and
keeps each row's states unpadded; ``replay`` then stands in for those blocks while a
batch goes through the model, so a training step computes the trained blocks alone. The
encoder treats rows independently (attention is masked within a row, no batch
statistics), so the blocks above see what the frozen blocks would give them in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext


def frozen_block_count(encoder, tokenizer) -> int:
    """How many of ``encoder``'s lowest blocks can be replayed: those nothing trains in,
    with the embeddings frozen too. 0 when an embedding weight trains, when the lowest
    block trains (LoRA on every block, full fine-tuning), when nothing in the encoder
    trains, or when the tokenizer pads on the left: position embeddings then count from
    the padding, so a row's states depend on the batch it was computed in."""
    from thaw.modeling import transformer_blocks

    if getattr(tokenizer, "padding_side", "right") != "right":
        return 0
    if any(p.requires_grad for name, p in encoder.named_parameters() if "embeddings" in name):
        return 0
    blocks = transformer_blocks(encoder)
    count = next((i for i, b in enumerate(blocks) if any(p.requires_grad for p in b.parameters())), len(blocks))
    return 0 if count == len(blocks) else count


def _stand_ins(prefix: FrozenPrefix, idx: Sequence[int], width: int) -> list:
    """Modules for the ``prefix.count`` lowest blocks: the lowest returns the rows' cached
    states padded to ``width`` whatever it is given, the others pass on what they get;
    shaped as the real blocks' output. For ``thaw.packed``, which skips them, each has
    ``packed_states``: the rows' states one after another, unpadded."""
    import torch

    wrap = (lambda x: (x,)) if prefix.returns_tuple else (lambda x: x)

    class Replay(torch.nn.Module):
        def forward(self, hidden_states, *args, **kwargs):
            return wrap(prefix.states(idx, width))

        def packed_states(self):
            return prefix.packed_states(idx)

    class Pass(torch.nn.Module):
        packed_states = None

        def forward(self, hidden_states, *args, **kwargs):
            return wrap(hidden_states)

    return [Replay()] + [Pass() for _ in range(prefix.count - 1)]


class FrozenPrefix:
    """Every row's hidden states after the ``count`` frozen blocks: one flat tensor of the
    rows' real tokens, row i at ``offsets[i]:offsets[i + 1]``."""

    def __init__(self, encoder, count: int, flat, offsets: list[int], returns_tuple: bool):
        self.encoder, self.count, self.flat, self.offsets = encoder, count, flat, offsets
        self.returns_tuple = returns_tuple

    @staticmethod
    def megabytes(encoder, lengths: Sequence[int], dtype) -> float:
        """What the states of rows ``lengths`` tokens long take in ``dtype`` (None: fp32)."""
        import torch

        return sum(lengths) * encoder.config.hidden_size * torch.finfo(dtype or torch.float32).bits / 8 / 2**20

    @classmethod
    def compute(cls, model, tokenizer, encoded: dict, device, batch_size: int, count: int) -> FrozenPrefix:
        """Run ``model.encoder``'s embeddings and ``count`` lowest blocks once over every
        row of ``encoded``, in eval mode and the precision thaw picked."""
        import torch

        from thaw.modeling import autocast_dtype, block_list, collate, length_sorted_batches

        encoder, dtype = model.encoder, autocast_dtype(device)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        shapes: list[bool] = []
        hook = block_list(encoder)[count - 1].register_forward_hook(
            lambda module, args, out: shapes.append(isinstance(out, tuple))
        )
        rows: list = [None] * len(lengths)
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():  # not inference_mode: the states feed blocks that train
                for idx in length_sorted_batches(lengths, batch_size):
                    features = collate(tokenizer, encoded, idx, device)
                    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                        hidden = encoder(**features, output_hidden_states=True).hidden_states[count]
                    real = features["attention_mask"].bool()
                    for r, i in enumerate(idx):
                        rows[i] = hidden[r][real[r]]
        finally:
            hook.remove()
            encoder.train(was_training)
        offsets = [0]
        for n in lengths:
            offsets.append(offsets[-1] + n)
        hidden_size = encoder.config.hidden_size
        flat = torch.cat(rows) if rows else torch.empty(0, hidden_size, device=device)
        return cls(encoder, count, flat, offsets, bool(shapes and shapes[0]))

    def states(self, idx: Sequence[int], width: int):
        """The rows ``idx`` as a batch padded on the right to ``width`` tokens: what the
        frozen blocks would output for them (their padding positions are zeros, which
        the attention mask keeps out of every real token's result)."""
        out = self.flat.new_zeros(len(idx), width, self.flat.shape[1])
        for r, i in enumerate(idx):
            start, end = self.offsets[i], self.offsets[i + 1]
            out[r, : end - start] = self.flat[start:end]
        return out

    def packed_states(self, idx: Sequence[int]):
        """The rows ``idx``'s states one after another, unpadded (``thaw.packed``'s layout)."""
        import torch

        return torch.cat([self.flat[self.offsets[i] : self.offsets[i + 1]] for i in idx])

    @contextmanager
    def replay(self, idx: Sequence[int], features: dict) -> Iterator[None]:
        """While the model runs the batch ``features`` of rows ``idx``, its frozen blocks
        are stood in for by their cached output; the real blocks are back afterwards."""
        from thaw.modeling import block_list

        blocks = block_list(self.encoder)
        originals = [blocks[i] for i in range(self.count)]
        width = features["input_ids"].shape[1]
        for i, stand_in in enumerate(_stand_ins(self, idx, width)):
            blocks[i] = stand_in
        try:
            yield
        finally:
            for i, block in enumerate(originals):
                blocks[i] = block


def replaying(prefix: FrozenPrefix | None, idx: Sequence[int], features: dict):
    """``prefix.replay`` for the batch, or nothing to do without a prefix."""
    return prefix.replay(idx, features) if prefix is not None else nullcontext()
