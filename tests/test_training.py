import json

import pytest
import torch

from crosstask.backends.hf import HFBackend
from crosstask.config import LoraSettings
from crosstask.evaluation import evaluate
from crosstask.models import load_model, load_tokenizer, resolve_model
from crosstask.tasks.base import Example, TaskSpec
from crosstask.training import (
    IGNORE_INDEX,
    answer_loss,
    attention_window,
    eager_attention_on_cpu,
    pack_batch,
    pad_batch,
    tokenize_examples,
    train_adapter,
    training_batch,
)

SPEC = TaskSpec("toy", "Say the colour.", "Colour", "choice", labels=("red", "blue"))
EXAMPLES = [Example(f"Item {i}: {'apple' if i % 2 else 'sky'}", "red" if i % 2 else "blue",
                    "red" if i % 2 else "blue") for i in range(16)]


def test_loss_is_on_the_answer_only(tiny_model):
    _, tokenizer = tiny_model
    tokenized = tokenize_examples(tokenizer, SPEC, EXAMPLES[:1], max_length=256)
    rows = tokenized.rows
    prompt_length = len(tokenizer(SPEC.prompt(EXAMPLES[0]))["input_ids"])
    labels = rows[0]["labels"]
    assert tokenized.truncated == tokenized.dropped == 0
    assert labels[:prompt_length] == [IGNORE_INDEX] * prompt_length
    answer = tokenizer(" blue", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert labels[prompt_length:] == answer == rows[0]["input_ids"][prompt_length:]


def test_truncation_never_cuts_the_answer(tiny_model):
    _, tokenizer = tiny_model
    spec = TaskSpec("math", "Solve the problem.", "Answer", "generate")
    question = " ".join(f"Step {i}: a farmer buys {i} more apples." for i in range(40)) + " How many now?"
    solution = "She adds them up: 1 + 2 + 3 = 6 apples in all.\n#### 780"
    long_example = Example(question, solution, "780")
    short_example = Example("What is 2 + 2?", "#### 4", "4")
    full_prompt = tokenizer(spec.prompt(long_example))["input_ids"]
    answer = tokenizer(spec.completion(long_example), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    max_length = len(answer) + 40
    assert len(full_prompt) + len(answer) > max_length
    tokenized = tokenize_examples(tokenizer, spec, [long_example, short_example], max_length)
    assert (tokenized.truncated, tokenized.dropped) == (1, 0) and len(tokenized.rows) == 2
    row = tokenized.rows[0]
    assert len(row["input_ids"]) == max_length
    assert row["input_ids"][-len(answer):] == answer and row["labels"][-len(answer):] == answer  # "#### 780" kept
    assert row["labels"][:-len(answer)] == [IGNORE_INDEX] * (max_length - len(answer))
    text = tokenizer.decode(row["input_ids"][:-len(answer)])
    assert text.startswith("Solve the problem.") and text.endswith("How many now?\nAnswer:")  # instruction and trigger
    assert "Step 0:" not in text  # what goes is the start of the input
    assert tokenized.rows[1]["input_ids"] == tokenizer(spec.prompt(short_example))["input_ids"] + tokenizer(
        spec.completion(short_example), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    # No room for the answer and a few prompt tokens: the example is dropped and counted, never cut.
    cramped = tokenize_examples(tokenizer, spec, [long_example, short_example], len(answer) + 4)
    assert (cramped.truncated, cramped.dropped, len(cramped.rows)) == (0, 1, 1)


@pytest.mark.parametrize("head_takes_a_mask", [True, False])  # transformers >= 5.2x, and the older 5.x
@pytest.mark.parametrize("share_prefix,row_tokens", [(True, 10_000), (True, 40), (False, 40), (False, 1)])
def test_answer_loss_on_packed_rows_equals_the_causal_lm_loss_on_padded_ones(tiny_model, monkeypatch, head_takes_a_mask,
                                                                             share_prefix, row_tokens):
    import crosstask.training

    if head_takes_a_mask and not crosstask.training._head_takes_a_mask():
        pytest.skip("this transformers takes no boolean logits_to_keep mask")
    monkeypatch.setattr(crosstask.training, "_HEAD_TAKES_A_MASK", head_takes_a_mask)
    model, tokenizer = tiny_model
    rows = tokenize_examples(tokenizer, SPEC, EXAMPLES[:5] + [EXAMPLES[10]], max_length=256).rows
    padded = pad_batch(rows, tokenizer.pad_token_id)  # rows of different lengths: padding included
    packed = pack_batch(rows, tokenizer.pad_token_id, share_prefix=share_prefix, row_tokens=row_tokens)
    reference = model(**padded).loss  # transformers' loss: logits at every position
    ours = answer_loss(model, packed)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    parameters = [p for p in model.parameters() if p.is_floating_point()]
    for theirs, mine in zip(torch.autograd.grad(reference, parameters), torch.autograd.grad(ours, parameters)):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("room", [-4, 0])  # the window this much longer than the longest example
def test_packing_only_where_every_example_fits_the_models_sliding_window(tiny_model, room):
    from transformers import MistralConfig, MistralForCausalLM

    _, tokenizer = tiny_model
    rows = tokenize_examples(tokenizer, SPEC, EXAMPLES[:5] + [EXAMPLES[10]], max_length=256).rows
    longest = max(len(row["input_ids"]) for row in rows)
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=longest + room,
                           pad_token_id=tokenizer.eos_token_id)
    windowed = MistralForCausalLM(config)
    window = attention_window(windowed)
    assert window == longest + room and attention_window(tiny_model[0]) is None
    reference = windowed(**pad_batch(rows, tokenizer.pad_token_id)).loss  # with the model's own window
    batch = training_batch(rows, tokenizer.pad_token_id, window, share_prefix=True)
    assert ("segments" in batch) == (room >= 0)
    torch.testing.assert_close(answer_loss(windowed, batch), reference, rtol=1e-5, atol=1e-6)
    if room < 0:  # why: a packed batch's mask would let the longest examples see past the window
        assert not torch.allclose(answer_loss(windowed, pack_batch(rows, tokenizer.pad_token_id)), reference, rtol=1e-4)


def test_packing_runs_the_instruction_once_per_row_and_pads_nothing_between_examples(tiny_model):
    _, tokenizer = tiny_model
    rows = tokenize_examples(tokenizer, SPEC, EXAMPLES[:6], max_length=256).rows
    lengths = [len(row["input_ids"]) for row in rows]
    instruction = len(tokenizer(SPEC.instruction)["input_ids"])
    shared = pack_batch(rows, tokenizer.pad_token_id, row_tokens=10_000)
    assert shared["input_ids"].shape[0] == 1  # everything in one row
    prefix = int((shared["segments"] == 0).sum())
    assert instruction <= prefix < min(lengths)
    assert shared["input_ids"].shape[1] == prefix + sum(length - prefix for length in lengths)  # no padding
    assert sorted(set(shared["segments"][0].tolist())) == list(range(7))
    for segment, row in enumerate(rows, start=1):  # each example's tokens, at its own positions
        own = shared["segments"][0] == segment
        assert shared["input_ids"][0][own].tolist() == row["input_ids"][prefix:]
        assert shared["position_ids"][0][own].tolist() == list(range(prefix, len(row["input_ids"])))
    split = pack_batch(rows, tokenizer.pad_token_id, row_tokens=prefix + 2 * max(lengths) - 2 * prefix)
    assert split["input_ids"].shape[0] == 3 and int((split["segments"] == 0).sum()) == 3 * prefix
    assert split["input_ids"].shape[1] <= prefix + 2 * (max(lengths) - prefix)
    alone = pack_batch(rows, tokenizer.pad_token_id, share_prefix=False, row_tokens=1)  # as padded, one row each
    torch.testing.assert_close(alone["input_ids"], pad_batch(rows, tokenizer.pad_token_id)["input_ids"])
    assert int((alone["segments"] == 0).sum()) == 0


def test_the_shared_prefix_stops_before_the_first_answer_prediction(tiny_model):
    _, tokenizer = tiny_model
    same_prompt = [Example("Item: sky", "blue", "blue"), Example("Item: sky", "red", "red")]  # differ in the answer only
    rows = tokenize_examples(tokenizer, SPEC, same_prompt, max_length=256).rows
    packed = pack_batch(rows, tokenizer.pad_token_id)
    first_answer = next(t for t, label in enumerate(rows[0]["labels"]) if label != IGNORE_INDEX)
    assert int((packed["segments"] == 0).sum()) == first_answer - 1
    assert int((packed["targets"] != IGNORE_INDEX).sum()) == sum(
        sum(label != IGNORE_INDEX for label in row["labels"]) for row in rows)


def test_training_attention_is_restored_afterwards(tiny_model_dir):
    model = load_model(resolve_model(str(tiny_model_dir)), torch.float32)
    before = model.config._attn_implementation
    with eager_attention_on_cpu(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == before
    try:
        with eager_attention_on_cpu(model):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert model.config._attn_implementation == before


def test_adapter_learns_and_is_a_standard_peft_folder(tiny_model_dir, tmp_path):
    from peft import PeftModel

    resolved = resolve_model(str(tiny_model_dir))
    model, tokenizer = load_model(resolved, torch.float32), load_tokenizer(resolved)
    settings = LoraSettings(r=4, alpha=8, lr=2e-2, epochs=8, batch_size=8, min_steps=None)
    metrics = train_adapter(model, tokenizer, SPEC, EXAMPLES, settings, seed=0, out_dir=tmp_path)
    assert metrics["steps"] == 16 and metrics["last_loss"] < metrics["first_loss"]
    assert metrics["packed_steps"] == 16  # the tiny Llama attends without a window
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    assert json.loads((tmp_path / "adapter_config.json").read_text())["r"] == 4

    reloaded = PeftModel.from_pretrained(load_model(resolved, torch.float32), tmp_path)
    reloaded.eval()
    model.eval()
    ours = evaluate(HFBackend.wrap(model, tokenizer, 8), SPEC, EXAMPLES)[0]
    theirs = evaluate(HFBackend.wrap(reloaded, tokenizer, 8), SPEC, EXAMPLES)[0]
    assert [r.logliks for r in ours] == [r.logliks for r in theirs]
    assert sum(r.correct for r in theirs) > len(EXAMPLES) / 2


def test_min_steps_repeats_a_small_source_and_leaves_a_large_one_alone(tiny_model_dir, tmp_path):
    from crosstask.training import count_steps

    assert count_steps(150, LoraSettings(batch_size=8, min_steps=100)) == 100  # 19 steps an epoch, repeated
    assert count_steps(10_000, LoraSettings(batch_size=8, min_steps=100)) == 1250  # an epoch is already more
    assert count_steps(150, LoraSettings(batch_size=8, epochs=2, min_steps=None)) == 38
    resolved = resolve_model(str(tiny_model_dir))
    model, tokenizer = load_model(resolved, torch.float32), load_tokenizer(resolved)
    settings = LoraSettings(r=2, alpha=4, lr=1e-2, epochs=1, batch_size=8, min_steps=5)
    metrics = train_adapter(model, tokenizer, SPEC, EXAMPLES, settings, seed=0, out_dir=tmp_path)
    assert metrics["steps"] == 5 and metrics["examples"] == 16


def test_auto_lr_scales_inversely_with_the_models_width(tiny_model_dir, tiny_settings):
    from crosstask.config import parse_experiment
    from crosstask.models import lr_for_width, with_lr
    from crosstask.pipeline import plan

    assert lr_for_width(4096) == pytest.approx(2e-4) and lr_for_width(576) == pytest.approx(1.422e-3, rel=1e-3)
    resolved = resolve_model(str(tiny_model_dir))  # hidden size 32
    assert LoraSettings().lr == "auto" and with_lr(LoraSettings(), resolved).lr == pytest.approx(2e-4 * 4096 / 32)
    assert with_lr(LoraSettings(lr=1e-3), resolved).lr == 1e-3
    # "auto" is resolved before the content key: the same training under either spelling is one adapter.
    keys = []
    for lr in ("auto", 2e-4 * 4096 / 32):
        settings = tiny_settings | {"sources": ["nli"], "targets": ["nli"], "lora": tiny_settings["lora"] | {"lr": lr}}
        keys.append(plan(parse_experiment(settings)).train_job("nli").key)
    assert keys[0] == keys[1]
    with pytest.raises(Exception, match="lr must be positive or 'auto'"):
        LoraSettings(lr=-1)


def test_a_models_architecture_is_read_from_disk_until_its_config_changes(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    import transformers

    from crosstask.models import architecture

    monkeypatch.setenv("CROSSTASK_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    built = architecture.__wrapped__(str(folder), "tiny")
    assert built.hidden_size == 32 and "q_proj" in built.linear_names
    assert any(path.endswith("self_attn.q_proj") for path in built.module_paths)

    def no_build(*args, **kwargs):
        raise AssertionError("the model was built again")

    with monkeypatch.context() as patched:
        patched.setattr(transformers.AutoModelForCausalLM, "from_config", no_build)
        assert architecture.__wrapped__(str(folder), "tiny") == built  # from the disk cache

        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | {"hidden_size": 64}))
        with pytest.raises(AssertionError, match="built again"):
            architecture.__wrapped__(str(folder), "tiny")
    assert architecture.__wrapped__(str(folder), "tiny").hidden_size == 64

    for stored in (tmp_path / "cache" / "architectures").iterdir():
        stored.write_text("{not json")
    assert architecture.__wrapped__(str(folder), "tiny").hidden_size == 64  # an unreadable entry is rebuilt
    readable = []
    for stored in (tmp_path / "cache" / "architectures").iterdir():
        try:
            readable.append(json.loads(stored.read_text())["hidden_size"])
        except ValueError:
            pass
    assert readable == [64]  # rewritten


def test_a_models_architecture_is_built_when_the_cache_cannot_be_written(tiny_model_dir, tmp_path, monkeypatch):
    from crosstask.models import architecture

    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("")
    monkeypatch.setenv("CROSSTASK_CACHE", str(not_a_folder))
    assert architecture.__wrapped__(str(tiny_model_dir), "tiny").hidden_size == 32
