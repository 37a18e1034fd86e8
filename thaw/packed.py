"""The encoder's forward over a batch's real tokens only.

A padded batch makes every linear layer of a block (the query, key and value
projections, the attention output, the feed-forward pair: nearly all of its FLOPs on
short texts) compute on the padding too. A class-balanced batch of 64 CLINC150 queries
is half padding, and cutting it into length-sorted chunks trades that for small matrix
products. ``packed_embed`` runs those layers on the real tokens of the whole batch as one
``[tokens, hidden]`` matrix, and only the attention itself (masked, row by row) on a
padded layout: the rows sorted by length in groups of ``ATTENTION_GROUP_ROWS``, each
padded to its own longest row (``_attend``). It calls the blocks' own modules, so LoRA
and IA3 wrappers apply as usual, and gives the padded forward's pooled embedding up to
float rounding.

Written for BERT-family blocks (``attention.self.query/key/value``, ``attention.output``,
``intermediate``, ``output``: BERT, MiniLM, RoBERTa ...) with right padding;
``packable`` says whether an encoder has them, and the classifier runs the library's own
forward for anything else. Frozen lower blocks stood in for by
``thaw.frozen_prefix`` are skipped: their cached states are already one row after another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from thaw.modeling import base_model, block_list

if TYPE_CHECKING:
    import torch

_BLOCK_PARTS = ("attention", "intermediate", "output")
_ATTENTION_PARTS = ("query", "key", "value", "dropout", "num_attention_heads", "attention_head_size")


def packable(encoder) -> bool:
    """Whether ``encoder`` is an encoder-only model with embeddings and BERT-shaped blocks
    that attend with absolute positions, which ``packed_hidden`` reproduces."""
    base = base_model(encoder)
    config = base.config
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return False
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return False  # relative position scores are computed inside the library's attention
    if not hasattr(base, "embeddings"):
        return False
    try:
        blocks = block_list(base)
    except ValueError:
        return False
    return all(_bert_block(block) for block in blocks)


def _bert_block(block) -> bool:
    if not all(hasattr(block, part) for part in _BLOCK_PARTS):
        return False
    attention = block.attention
    if getattr(block, "chunk_size_feed_forward", 0):
        return False
    return hasattr(attention, "output") and all(hasattr(attention.self, p) for p in _ATTENTION_PARTS)


# Pack a batch when at least this share of its tokens is padding. Measured with MiniLM in
# fp32 on a 2-core AVX2 machine, steps interleaved: class-balanced contrastive batches of
# 64 rows, 49% padding on CLINC150, 1.41x faster packed; length-bucketed classification
# batches of 32, 5-6% padding, 0.96-0.97x (the gathers cost more than the padding).
PACK_ABOVE_PADDING = 0.2


def worth_packing(mask) -> bool:
    """Whether a batch with attention ``mask`` is padded enough for ``packed_embed``."""
    return float(mask.sum()) <= (1 - PACK_ABOVE_PADDING) * mask.numel()


def packed_hidden(encoder, features: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The last block's states for the real tokens of a right-padded batch, one row after
    another (``[tokens, hidden]``), and the batch row of each token."""
    base = base_model(encoder)
    mask = features["attention_mask"].bool()
    batch, width = mask.shape
    real = mask.reshape(-1).nonzero().squeeze(1)  # positions in the flattened batch, row-major
    blocks = list(block_list(base))
    replayed = 0
    while replayed < len(blocks) and hasattr(blocks[replayed], "packed_states"):
        replayed += 1  # stand-ins for frozen blocks (thaw.frozen_prefix)
    if replayed:
        x = blocks[0].packed_states()
    else:
        token_types = features.get("token_type_ids")
        embedded = base.embeddings(input_ids=features["input_ids"], token_type_ids=token_types)
        x = embedded.reshape(batch * width, -1)[real]
    groups = attention_groups(mask)
    for block in blocks[replayed:]:
        x = _block(block, x, groups)
    return x, real // width


# Rows whose attention is computed together: the batch's rows sorted by length and cut
# into groups of this many, each padded only to its own longest row (a class-balanced
# batch mixes lengths, and attention's work grows with the square of the padded width).
ATTENTION_GROUP_ROWS = 16


@dataclass(frozen=True)
class _Group:
    rows: int
    width: int
    slots: torch.Tensor  # each of the group's tokens' position in its [rows * width] layout
    tokens: torch.Tensor  # the same tokens' positions in the packed states
    keys: torch.Tensor  # [rows, 1, 1, width]: the real tokens a row's queries attend to

    def laid_out(self, t: torch.Tensor, heads: int) -> torch.Tensor:
        """The group's tokens of packed ``t`` (``[tokens, heads * size]``) as ``[rows,
        width, heads, size]``, zero in the padding."""
        out = t.new_zeros(self.rows * self.width, t.shape[1]).index_copy(0, self.slots, t.index_select(0, self.tokens))
        return out.view(self.rows, self.width, heads, -1)


@dataclass(frozen=True)
class AttentionGroups:
    """Where a batch's real tokens sit while attention is computed (``attention_groups``)."""

    groups: tuple[_Group, ...]
    order: torch.Tensor  # for each packed token, its position in the groups' outputs, concatenated


def attention_groups(mask: torch.Tensor, rows: int = ATTENTION_GROUP_ROWS) -> AttentionGroups:
    """The rows of a right-padded batch (``mask``: ``[batch, width]``) sorted by length and
    cut into groups of ``rows``, each padded to its longest row."""
    import torch

    lengths = mask.sum(1)
    starts = torch.cumsum(lengths, 0) - lengths  # each row's first token in the packed states
    by_length = torch.argsort(lengths, stable=True)
    groups = []
    for first in range(0, len(by_length), rows):
        members = by_length[first : first + rows]
        width = int(lengths[members].max())
        own = mask[members, :width]
        slots = own.reshape(-1).nonzero().squeeze(1)
        tokens = starts[members][slots // width] + slots % width
        groups.append(_Group(len(members), width, slots, tokens, own[:, None, None, :]))
    gathered = torch.cat([g.tokens for g in groups])
    order = torch.empty_like(gathered)
    order[gathered] = torch.arange(len(gathered), device=gathered.device)
    return AttentionGroups(tuple(groups), order)


def _attend(
    q,
    k,
    v,
    groups: AttentionGroups,
    heads: int,
    size: int,
    dropout: float,
    scale: float,
    written_out: bool | None = None,
):
    """Attention within each row for packed ``q``, ``k``, ``v`` (``[tokens, heads *
    size]``), group by group; the context, packed like them.

    On a CPU (``written_out``, the default there) it is written out: for bf16 with dropout
    ``scaled_dot_product_attention`` takes its reference path, fp32 products on strided
    views, where here the two products run in the inputs' precision on contiguous copies,
    the softmax in fp32 and the dropout through ``thaw.dropout``. Elsewhere (CUDA) the
    library's fused kernels are the fast path, and each group goes to them."""
    import torch

    from thaw.dropout import dropout as cheap_dropout

    if written_out is None:
        written_out = q.device.type == "cpu"
    outputs = []
    for g in groups.groups:
        queries, keys, values = (g.laid_out(t, heads).transpose(1, 2) for t in (q, k, v))  # [rows, heads, width, size]
        if written_out:
            flat = lambda t: t.reshape(-1, *t.shape[2:])  # noqa: E731  contiguous [rows * heads, ...]
            with torch.autocast(q.device.type, enabled=False):
                scores = torch.bmm(flat(queries) * scale, flat(keys.transpose(2, 3)))
                weights = scores.view(g.rows, heads, g.width, g.width).float().masked_fill(~g.keys, float("-inf"))
                weights = weights.softmax(-1)
                if dropout:
                    weights = cheap_dropout(weights, dropout)
                context = torch.bmm(flat(weights).to(values.dtype), flat(values)).view(g.rows, heads, g.width, size)
        else:
            context = torch.nn.functional.scaled_dot_product_attention(
                queries, keys, values, attn_mask=g.keys, dropout_p=dropout, scale=scale
            )
        context = context.transpose(1, 2).reshape(g.rows * g.width, heads * size)
        outputs.append(context.index_select(0, g.slots))
    return torch.cat(outputs).index_select(0, groups.order)


def _block(block, x, groups: AttentionGroups):
    """One BERT block on packed states ``x``: the linear layers on the real tokens, the
    attention within each row (``_attend``)."""
    attention = block.attention.self
    heads, size = attention.num_attention_heads, attention.attention_head_size
    q, k, v = (layer(x) for layer in (attention.query, attention.key, attention.value))
    dropout = attention.dropout.p if attention.training else 0.0
    context = _attend(q, k, v, groups, heads, size, dropout, getattr(attention, "scaling", size**-0.5))
    hidden = block.attention.output(context, x)
    return block.output(block.intermediate(hidden), hidden)


def packed_embed(encoder, features: dict, pooling: str) -> torch.Tensor:
    """``thaw.modeling.pool`` of the encoder's output, from ``packed_hidden``: the mean
    over a row's real tokens (summed in fp32) or its first token; L2-normalised."""
    import torch

    x, rows = packed_hidden(encoder, features)
    mask = features["attention_mask"]
    if pooling == "cls":
        starts = torch.cumsum(mask.sum(1), 0) - mask.sum(1)  # each row's first real token
        vec = x[starts].float()
    else:
        sums = x.new_zeros(mask.shape[0], x.shape[1], dtype=torch.float32).index_add(0, rows, x.float())
        vec = sums / mask.sum(1, keepdim=True).clamp(min=1).to(sums.dtype)
    return torch.nn.functional.normalize(vec, dim=-1)
