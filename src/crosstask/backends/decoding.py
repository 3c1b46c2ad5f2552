"""Rows of a greedy generation decoded together on one key/value cache (the ``hf`` backend's batches).

A ``Decoding`` holds the rows being answered, their cache, the attention mask over it and each row's
next token. Rows leave it when they end (``select``) and rows whose prompts just ran join it
(``join``): the shorter cache is padded on the left and masked, and positions are given per row, so a
token's column in the cache does not matter.

Its cache layers are ``GrowingLayer``s: keys and values sit in buffers with free columns at the end,
and a decoding step writes its token there. transformers' ``DynamicLayer`` copies the whole cache into
a new tensor at every step instead (``torch.cat``): with 32 rows and 300 cached tokens that copy was
30 % of a step (SmolLM2-135M, fp32, 2-core CPU).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


def growing_cache_supported(cache) -> bool:
    """Whether the layers of this transformers cache are plain key/value tensors that can be joined,
    trimmed and held in growing buffers (``DynamicLayer``), not e.g. sliding windows."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) in (DynamicLayer, GrowingLayer) and layer.is_initialized
                                for layer in layers)


def returned_cache(output):
    """The key/value cache a transformers forward returns (``cache`` from transformers 5.2x on)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys`` and ``values`` are the first columns of larger buffers.

    ``update`` writes new tokens into the free columns and grows the buffers by ``room`` columns when
    they are full. Anything that replaces ``keys`` with another tensor (``DynamicLayer``'s own
    ``batch_select_indices``, ``crop`` ...) keeps working: the next ``update`` sees that ``keys`` is no
    longer the buffer's start and moves it into a new buffer.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int):
        super().__init__()
        self.lazy_initialization(keys, values)
        self.room = max(room, 1)
        self._hold(keys, values, self.room)

    def _hold(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        length = keys.shape[-2]
        self._key_buffer = keys.new_empty((*keys.shape[:-2], length + room, keys.shape[-1]))
        self._value_buffer = values.new_empty((*values.shape[:-2], length + room, values.shape[-1]))
        self._key_buffer[..., :length, :] = keys
        self._value_buffer[..., :length, :] = values
        self.keys, self.values = self._key_buffer[..., :length, :], self._value_buffer[..., :length, :]

    def _in_buffer(self) -> bool:
        """Whether ``keys`` and ``values`` are still the first columns of the buffers."""
        return all(tensor.data_ptr() == buffer.data_ptr() and tensor.stride() == buffer.stride()
                   and tensor.shape[:-2] == buffer.shape[:-2]
                   for tensor, buffer in ((self.keys, self._key_buffer), (self.values, self._value_buffer)))

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        length, new = self.keys.shape[-2], key_states.shape[-2]
        if not self._in_buffer() or length + new > self._key_buffer.shape[-2]:
            self._hold(self.keys, self.values, max(self.room, new))
        self._key_buffer[..., length : length + new, :] = key_states
        self._value_buffer[..., length : length + new, :] = value_states
        self.keys = self._key_buffer[..., : length + new, :]
        self.values = self._value_buffer[..., : length + new, :]
        return self.keys, self.values

    def keep(self, rows: torch.Tensor, first_column: int) -> None:
        """Only these rows, from this column on, in new buffers with as many free columns as before.

        Only the used columns are copied: indexing the whole buffer copied its free columns too, as many
        as ``max_new_tokens`` (224 for word problems) against ~60-80 used ones."""
        free = self._key_buffer.shape[-2] - self.keys.shape[-2] if self._in_buffer() else self.room
        self._hold(self.keys[..., first_column:, :].index_select(0, rows),
                   self.values[..., first_column:, :].index_select(0, rows), free)

    def stack(self, other: GrowingLayer, width: int) -> None:
        """These rows, then ``other``'s, each cache padded on the left to ``width`` columns (zeros: they
        are masked out, and a masked column must still hold finite numbers)."""
        self._key_buffer = _stacked(self.keys, other.keys, width, self.room)
        self._value_buffer = _stacked(self.values, other.values, width, self.room)
        self.keys, self.values = self._key_buffer[..., :width, :], self._value_buffer[..., :width, :]


def _stacked(top: torch.Tensor, bottom: torch.Tensor, width: int, room: int) -> torch.Tensor:
    """A buffer of ``width + room`` columns holding ``top``'s rows, then ``bottom``'s, each ending at ``width``."""
    rows = top.shape[0]
    # Only the left padding is zeroed: the free columns are written before they are read, and zeroing
    # them too cost more than the rest of the join (a fresh allocation's untouched pages cost nothing).
    buffer = top.new_empty((rows + bottom.shape[0], *top.shape[1:-2], width + room, top.shape[-1]))
    for part, tensor in ((buffer[:rows], top), (buffer[rows:], bottom)):
        start = width - tensor.shape[-2]
        part[..., :start, :] = 0
        part[..., start:width, :] = tensor
    return buffer


class Decoding:
    """The rows being answered together: their key/value cache, attention mask over it, the position of
    each row's last token and each row's next token (greedy). ``room`` is how many tokens a row may
    still add (``max_new_tokens``): the cache buffers are made that much longer at once."""

    def __init__(self, rows: list[int], cache, mask: torch.Tensor, positions: torch.Tensor, next_tokens: torch.Tensor,
                 room: int):
        self.rows, self.cache, self.mask, self.positions, self.next_tokens = rows, cache, mask, positions, next_tokens
        self.joinable = growing_cache_supported(cache)
        if self.joinable:
            cache.layers = [GrowingLayer(layer.keys, layer.values, room) for layer in cache.layers]

    def step(self, module, cache_key: str) -> None:
        """Feed every row its next token; the next tokens become the argmax after it."""
        ones = torch.ones((len(self.rows), 1), dtype=self.mask.dtype, device=self.mask.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        self.positions = self.positions + 1
        out = module(input_ids=self.next_tokens.unsqueeze(1), attention_mask=self.mask, position_ids=self.positions,
                     use_cache=True, logits_to_keep=1, **{cache_key: self.cache})
        self.cache, self.next_tokens = returned_cache(out), out.logits[:, -1].argmax(-1)

    def select(self, rows: list[int]) -> None:
        """Keep only these rows, and drop the cache columns none of them attends to any more."""
        index = torch.tensor(rows, device=self.mask.device)
        self.rows = [self.rows[row] for row in rows]
        self.mask, self.positions, self.next_tokens = self.mask[index], self.positions[index], self.next_tokens[index]
        if not self.joinable:
            self.cache.batch_select_indices(index)
            return
        unused = int(self.mask.any(dim=0).long().argmax())  # the first column some row attends to
        for layer in self.cache.layers:
            layer.keep(index, unused)
        self.mask = self.mask[:, unused:]

    def join(self, other: Decoding) -> Decoding:
        """These rows and ``other``'s in one batch; the shorter cache is padded on the left (masked out:
        positions are given per row, so a token's place in the cache does not matter)."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.stack(theirs, width)
        self.mask = torch.cat([pad_left(self.mask, width, dim=1), pad_left(other.mask, width, dim=1)])
        self.rows = self.rows + other.rows
        self.positions = torch.cat([self.positions, other.positions])
        self.next_tokens = torch.cat([self.next_tokens, other.next_tokens])
        return self


def pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """``tensor`` with zeros in front along ``dim`` up to ``width``."""
    missing = width - tensor.shape[dim]
    if not missing:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
