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

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

PREFIX_FILE = "states.safetensors"
PREFIX_META = "prefix.json"


class _PrefixDone(Exception):
    """Raised by the hook on the last frozen block: the blocks above need not run."""


def _offsets(lengths: Sequence[int]) -> list[int]:
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    return offsets


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
        row of ``encoded``, in eval mode and the precision thaw picked; the blocks above
        are not run (a forward hook on the last frozen block ends each batch's pass)."""
        import torch

        from thaw.modeling import autocast_dtype, block_list, collate, length_sorted_batches

        encoder, dtype = model.encoder, autocast_dtype(device)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        caught: list = []

        def stop_after(module, args, out):
            caught.append(out)
            raise _PrefixDone

        hook = block_list(encoder)[count - 1].register_forward_hook(stop_after)
        rows: list = [None] * len(lengths)
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():  # not inference_mode: the states feed blocks that train
                for idx in length_sorted_batches(lengths, batch_size):
                    features = collate(tokenizer, encoded, idx, device)
                    amp = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
                    with amp, suppress(_PrefixDone):
                        encoder(**features)
                    out = caught[-1]
                    hidden = out[0] if isinstance(out, tuple) else out
                    real = features["attention_mask"].bool()
                    for r, i in enumerate(idx):
                        rows[i] = hidden[r][real[r]]
        finally:
            hook.remove()
            encoder.train(was_training)
        flat = torch.cat(rows) if rows else torch.empty(0, encoder.config.hidden_size, device=device)
        returns_tuple = bool(caught) and isinstance(caught[0], tuple)
        return cls(encoder, count, flat, _offsets(lengths), returns_tuple)

    def lengths(self) -> list[int]:
        """Each row's number of real tokens."""
        return [b - a for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]

    def take(self, positions: Sequence[int]) -> FrozenPrefix:
        """The rows at ``positions``, in that order (one cross-validation fold's rows)."""
        import torch

        spans = [self.flat[self.offsets[i] : self.offsets[i + 1]] for i in positions]
        flat = torch.cat(spans) if spans else self.flat[:0]
        return FrozenPrefix(self.encoder, self.count, flat, _offsets([len(s) for s in spans]), self.returns_tuple)

    @staticmethod
    def concat(parts: Sequence[FrozenPrefix]) -> FrozenPrefix:
        """The rows of ``parts`` one after another (splits pooled for a refit)."""
        import torch

        first = parts[0]
        if len(parts) == 1:
            return first  # one split: its states as they are, not a copy
        flat = torch.cat([p.flat for p in parts])
        return FrozenPrefix(
            first.encoder, first.count, flat, _offsets([n for p in parts for n in p.lengths()]), first.returns_tuple
        )

    def save(self, directory: Path) -> None:
        """The states (safetensors) and what reads them back, into ``directory``."""
        import torch
        from safetensors.torch import save_file

        offsets = torch.tensor(self.offsets, dtype=torch.int64)
        save_file({"flat": self.flat.contiguous().cpu(), "offsets": offsets}, str(directory / PREFIX_FILE))
        meta = {"count": self.count, "returns_tuple": self.returns_tuple}
        (directory / PREFIX_META).write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, encoder, device, count: int) -> FrozenPrefix:
        """What ``save`` wrote, for ``encoder``'s ``count`` lowest blocks, on ``device``;
        ValueError when it is not that: states of this encoder's width after ``count``
        blocks, one span of tokens per row."""
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(directory / PREFIX_FILE), device=str(device))
            meta = json.loads((directory / PREFIX_META).read_text(encoding="utf-8"))
            flat, offsets, saved_count = tensors["flat"], tensors["offsets"].tolist(), meta["count"]
        except Exception as exc:  # unreadable or incomplete: the caller computes the states again
            raise ValueError(f"unreadable frozen states ({type(exc).__name__})") from exc
        steps = [b - a for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        if (
            flat.ndim != 2
            or flat.shape[1] != encoder.config.hidden_size
            or not offsets
            or offsets[0] != 0
            or offsets[-1] != flat.shape[0]
            or any(n < 0 for n in steps)
            or saved_count != count
        ):
            raise ValueError(f"frozen states of shape {tuple(flat.shape)} do not fit this encoder")
        return cls(encoder, count, flat, offsets, bool(meta.get("returns_tuple")))

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
