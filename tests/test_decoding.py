"""The key/value cache that generation decodes on: growing buffers that hold what transformers' own
cache would, and answers equal to transformers' ``generate``."""

from dataclasses import replace

import torch
from transformers.cache_utils import DynamicLayer

from crosstask.backends.decoding import GrowingLayer
from crosstask.backends.hf import HFBackend
from crosstask.requests import GenerateRequest, cut_at_stops
from crosstask.tokenization import encode_prompt


def _states(rows: int, tokens: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 2, tokens, 4, generator=generator)  # (rows, heads, tokens, head size)


def _pair(rows: int, tokens: int, room: int) -> tuple[GrowingLayer, DynamicLayer]:
    """A growing layer and transformers' own, both holding the same first ``tokens``."""
    keys, values = _states(rows, tokens, 0), _states(rows, tokens, 1)
    plain = DynamicLayer()
    plain.update(keys, values)
    return GrowingLayer(keys, values, room), plain


def _assert_same(growing: GrowingLayer, plain: DynamicLayer) -> None:
    assert torch.equal(growing.keys, plain.keys) and torch.equal(growing.values, plain.values)
    assert growing.get_seq_length() == plain.get_seq_length()


def test_updates_past_the_room_hold_what_dynamic_layer_holds():
    growing, plain = _pair(rows=3, tokens=5, room=2)
    for step in range(7):  # fills the room, grows, fills again; one update of several tokens too
        new_keys, new_values = _states(3, 1 + (step == 4) * 2, 10 + step), _states(3, 1 + (step == 4) * 2, 20 + step)
        returned = growing.update(new_keys, new_values)
        plain.update(new_keys, new_values)
        assert torch.equal(returned[0], plain.keys) and torch.equal(returned[1], plain.values)
    _assert_same(growing, plain)


def test_dynamic_layer_operations_that_replace_the_keys_keep_working():
    growing, plain = _pair(rows=4, tokens=6, room=8)
    index = torch.tensor([2, 0])
    for layer in (growing, plain):  # transformers' own methods assign new tensors to keys and values
        layer.batch_select_indices(index)
        layer.crop(-1)
    _assert_same(growing, plain)
    new_keys, new_values = _states(2, 1, 3), _states(2, 1, 4)
    growing.update(new_keys, new_values)
    plain.update(new_keys, new_values)
    _assert_same(growing, plain)


def test_keeping_rows_and_stacking_layers_pad_and_trim_like_plain_tensors():
    growing, plain = _pair(rows=3, tokens=6, room=4)
    for layer in (growing, plain):  # keys replaced by transformers' own method: keep starts from them
        layer.batch_select_indices(torch.tensor([2, 1, 0]))
    growing.keep(torch.tensor([2, 0]), first_column=2)
    assert torch.equal(growing.keys, plain.keys[[2, 0], :, 2:]) and torch.equal(growing.values, plain.values[[2, 0], :, 2:])

    other, other_plain = _pair(rows=1, tokens=7, room=4)
    torch.full((3, 2, 7 + 4, 4), float("nan"))  # freed at once: memory the new buffer is likely to reuse
    growing.stack(other, width=7)
    zeros = torch.zeros(2, 2, 3, 4)
    expected = torch.cat([torch.cat([zeros, plain.keys[[2, 0], :, 2:]], dim=2), other_plain.keys])
    assert torch.equal(growing.keys, expected)
    assert growing.keys.shape[-2] == 7
    new_keys, new_values = _states(3, 1, 5), _states(3, 1, 6)
    keys, _ = growing.update(new_keys, new_values)  # the room is still there after keep and stack
    assert torch.equal(keys[:, :, :7], expected) and torch.equal(keys[:, :, 7:], new_keys)


# The tiny random model repeats a word; these stops end its rows after 1, 5 or all 12 tokens.
REQUESTS = [GenerateRequest(f"Question {i}: {'what comes next ' * i}?", 12, stop=(" Pom", " Ingredients"))
            for i in range(6)]


def _generate_answers(model, tokenizer, requests: list[GenerateRequest]) -> list[str]:
    """transformers' greedy ``generate``, one request at a time, cut at the stops."""
    expected = []
    for request in requests:
        ids = torch.tensor([encode_prompt(tokenizer, request.prompt)])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=request.max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
        expected.append(cut_at_stops(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True), request.stop))
    return expected


def test_answers_equal_transformers_generate_token_for_token(tiny_model):
    model, tokenizer = tiny_model
    answers = HFBackend.wrap(model, tokenizer, batch_size=2).generate(REQUESTS)
    assert [answer.text for answer in answers] == _generate_answers(model, tokenizer, REQUESTS)
    assert len({answer.tokens for answer in answers}) > 2  # rows ended apart: some left, others joined


def test_rows_decode_together_up_to_generate_batch_size_while_prompts_run_batch_size_at_a_time(tiny_model,
                                                                                                monkeypatch):
    model, tokenizer = tiny_model
    shapes = []  # (rows, tokens per row) of every forward
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *args, **kwargs: shapes.append(tuple(kwargs["input_ids"].shape))
                        or forward(*args, **kwargs))
    requests = [replace(request, stop=()) for request in REQUESTS]  # every row runs all 12 tokens
    answers = HFBackend.wrap(model, tokenizer, batch_size=2, generate_batch_size=5).generate(requests)
    monkeypatch.undo()
    prompts, steps = [rows for rows, tokens in shapes if tokens > 1], [rows for rows, tokens in shapes if tokens == 1]
    assert max(prompts) == 2 and sum(prompts) == len(requests)
    assert max(steps) == 5  # three batches of prompts joined into one batch of decoding rows
    assert [answer.text for answer in answers] == _generate_answers(model, tokenizer, requests)
