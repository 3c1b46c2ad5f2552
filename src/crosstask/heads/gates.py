"""Multiplicative gates on attention heads, as hooks on each layer's ``o_proj`` input.

transformers v5 removed ``head_mask``, so a head is gated where its output is still separate from
the others: the input of the attention output projection, ``(B, T, H·d)``, is the H heads' outputs
side by side. A forward pre-hook reshapes it to ``(B, T, H, d)``, multiplies head h of layer l by
``g[l, h]`` and reshapes back. With grouped-query attention the key/value heads are shared but the
output still has one slice per *query* head, so H is ``num_attention_heads``.

Under PEFT, ``o_proj`` is a ``lora.Linear`` wrapper around the base layer; the hook sits on the
wrapper, so the gated input feeds both the base weights and the LoRA path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class HeadGateError(ValueError):
    """The model's attention layers could not be found or do not match its config."""


@dataclass(frozen=True)
class AttentionLayout:
    """Where the heads are: one ``o_proj`` module per layer, in depth order, and the head geometry."""

    o_projs: tuple[nn.Module, ...]
    num_heads: int
    head_dim: int

    @property
    def num_layers(self) -> int:
        return len(self.o_projs)

    @property
    def shape(self) -> tuple[int, int]:
        return self.num_layers, self.num_heads


def _text_config(model):
    config = getattr(model, "config", None)
    if config is None:
        raise HeadGateError(f"{type(model).__name__} has no config to read the number of heads from")
    # Multimodal configs keep the language model's geometry in a sub-config.
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def find_attention_layout(model: nn.Module) -> AttentionLayout:
    """The ``o_proj`` of every ``*.self_attn`` module (works on plain and PEFT-wrapped models)."""
    o_projs = tuple(module.o_proj for name, module in model.named_modules()
                    if name.split(".")[-1] == "self_attn" and isinstance(getattr(module, "o_proj", None), nn.Module))
    if not o_projs:
        raise HeadGateError(f"{type(model).__name__}: no '*.self_attn' module with an 'o_proj' "
                            "(not a Llama-style model?)")
    config = _text_config(model)
    num_heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // num_heads
    for o_proj in o_projs:
        in_features = getattr(o_proj, "in_features", None)
        if in_features is not None and in_features != num_heads * head_dim:
            raise HeadGateError(f"o_proj takes {in_features} features, not num_attention_heads x head_dim = "
                                f"{num_heads} x {head_dim}")
    return AttentionLayout(o_projs, num_heads, head_dim)


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


class HeadGates:
    """Gates ``values[l, h]`` (initialised to 1) on every attention head while the ``with`` block runs.

    ``values`` is a float32 ``nn.Parameter`` of shape ``(L, H)`` that requires grad, so
    ``torch.autograd.grad(loss, gates.values)`` gives ∂loss/∂g for every head from one backward pass.
    :meth:`per_item` swaps in a ``(B, L, H)`` tensor instead: row b's gates act on batch row b only,
    so the gradient of a summed loss w.r.t. row b is item b's own gradient. :meth:`ablate` zeroes a
    head without recording gradients. The hooks are removed when the block exits.

    >>> with HeadGates(model) as gates:
    ...     gates.ablate(3, 5)
    ...     loss = model(**batch).loss
    """

    def __init__(self, model: nn.Module, requires_grad: bool = True):
        self.layout = find_attention_layout(model)
        self.device = _device_of(self.layout.o_projs[0])  # the gates live where the heads they gate do
        self.values: torch.Tensor = nn.Parameter(torch.ones(self.layout.shape, device=self.device),
                                                 requires_grad=requires_grad)
        self._handles: list = []

    @property
    def shape(self) -> tuple[int, int]:
        return self.layout.shape

    def per_item(self, batch_size: int) -> torch.Tensor:
        """Replace the gates by ones of shape ``(batch_size, L, H)`` that require grad; returns them."""
        self.values = torch.ones((batch_size, *self.layout.shape), device=self.device, requires_grad=True)
        return self.values

    def reset(self) -> None:
        """All gates back to 1 (open)."""
        with torch.no_grad():
            self.values.fill_(1.0)

    def ablate(self, layer: int, head: int) -> None:
        """Zero one head (in every batch row, if the gates are per item)."""
        with torch.no_grad():
            self.values[..., layer, head] = 0.0

    def __enter__(self) -> HeadGates:
        for layer, o_proj in enumerate(self.layout.o_projs):
            self._handles.append(o_proj.register_forward_pre_hook(self._hook(layer)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, layer: int):
        heads, head_dim = self.layout.num_heads, self.layout.head_dim

        def gate_input(module, args):
            hidden = args[0]
            gates = self.values[..., layer, :]  # (H,) or (B, H)
            gates = gates.view(1, 1, heads, 1) if gates.dim() == 1 else gates.view(-1, 1, heads, 1)
            # Gate in (at least) float32 even for a bf16 model: the gradient w.r.t. g sums T·d
            # products, and a bf16 sum would keep ~3 significant digits. At g = 1 the cast back is exact.
            precision = torch.promote_types(hidden.dtype, gates.dtype)
            split = hidden.reshape(*hidden.shape[:-1], heads, head_dim).to(precision)
            gated = (split * gates.to(precision)).reshape(hidden.shape).to(hidden.dtype)
            return (gated, *args[1:])

        return gate_input
