"""Attention-head gates, activation patterns, their statistics and the run-level driver (tiny random Llama)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from crosstask import api
from crosstask.config import TaskRef
from crosstask.heads import (
    HeadCombination,
    HeadGates,
    PatternShift,
    ablation_effects,
    activation_pattern,
    coefficient_of_variation,
    compute_run_patterns,
    find_attention_layout,
    gini,
    load_pattern,
    pattern_correlation,
    save_pattern,
    top_heads,
)
from crosstask.heads.patterns import answer_batches, item_losses
from crosstask.models import load_model, resolve_model
from crosstask.store import Store
from crosstask.tasks.data import resolve

TASK = "sentiment_binary"


@pytest.fixture(scope="module")
def task():
    return resolve(TaskRef(task=TASK)).spec, api.sample(TASK, 8, split="eval")


def _fresh_model(tiny_model_dir, dtype=torch.float32):
    return load_model(resolve_model(str(tiny_model_dir)), dtype)


def _mean_loss(model, batches, n_items) -> torch.Tensor:
    return sum(item_losses(model, batch).sum() for batch in batches) / n_items


def test_layout_reads_query_heads_under_grouped_query_attention(tiny_model):
    model, _ = tiny_model
    layout = find_attention_layout(model)
    assert layout.shape == (2, 4) and layout.head_dim == 8  # 4 query heads (2 key/value heads), hidden 32


def test_gate_gradient_matches_finite_differences(tiny_model_dir, tiny_model, task):
    # float64 so that a central difference resolves the tiny head effects of a random model (Llama's
    # RMSNorm still computes in float32, so the step cannot be very small). Measured relative errors
    # with this step: 8e-6 to 3e-5.
    model, tokenizer = _fresh_model(tiny_model_dir, torch.float64), tiny_model[1]
    spec, examples = task
    batches = answer_batches(tokenizer, spec, examples[:4], batch_size=2)
    with HeadGates(model) as gates:
        (gradient,) = torch.autograd.grad(_mean_loss(model, batches, 4), gates.values)
        epsilon = 0.05
        for layer, head in [(0, 0), (0, 3), (1, 1), (1, 2)]:
            with torch.no_grad():
                gates.values[layer, head] = 1 + epsilon
                above = _mean_loss(model, batches, 4)
                gates.values[layer, head] = 1 - epsilon
                below = _mean_loss(model, batches, 4)
                gates.reset()
            estimate = float(above - below) / (2 * epsilon)
            assert estimate == pytest.approx(float(gradient[layer, head]), rel=2e-4, abs=1e-9)


def test_signed_pattern_predicts_the_loss_change_of_ablating_each_head(tiny_model, task):
    model, tokenizer = tiny_model
    spec, examples = task
    pattern = activation_pattern(model, tokenizer, spec, examples, batch_size=4, mode="signed")
    effects = ablation_effects(model, tokenizer, spec, examples, batch_size=4)
    rho = spearmanr(-pattern.ravel(), effects.ravel())[0]
    # Measured on this random tiny model: rho = 1.0 and the largest error 1-4 % of the largest effect
    # on three tasks x two item sets; a full ablation is still close to linear at this scale.
    print(f"Spearman(-A_signed, ablation) = {rho:.3f}")
    assert rho > 0.9
    assert np.abs(-pattern - effects).max() < 0.1 * np.abs(effects).max()


def test_per_item_gates_give_the_same_abs_pattern_as_one_backward_per_item(tiny_model, task):
    model, tokenizer = tiny_model
    spec, examples = task
    batched = activation_pattern(model, tokenizer, spec, examples, batch_size=4, mode="abs")
    one_by_one = np.mean([np.abs(activation_pattern(model, tokenizer, spec, [example], batch_size=1, mode="signed"))
                          for example in examples], axis=0)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-3, atol=1e-9)
    signed = activation_pattern(model, tokenizer, spec, examples, batch_size=4, mode="signed")
    assert (batched >= np.abs(signed) - 1e-9).all()  # |mean| <= mean |.|


def test_layer_normalisation_gives_unit_rows(tiny_model, task):
    model, tokenizer = tiny_model
    pattern = activation_pattern(model, tokenizer, *task, normalize="layer")
    np.testing.assert_allclose(np.linalg.norm(pattern, axis=1), 1.0)


def test_patterns_leave_the_model_as_found(tiny_model_dir, tiny_model, task):
    model, tokenizer = _fresh_model(tiny_model_dir), tiny_model[1]
    spec, examples = task
    model.lm_head.weight.requires_grad_(False)  # a mix of frozen and trainable parameters, restored as found
    model.model.layers[1].train()
    trainable = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    modes = {name: module.training for name, module in model.named_modules()}
    batch = answer_batches(tokenizer, spec, examples, batch_size=8)[0]
    with torch.no_grad():
        before = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    activation_pattern(model, tokenizer, spec, examples, mode="abs")
    ablation_effects(model, tokenizer, spec, examples[:2], heads=[(0, 1)])
    with torch.no_grad():
        after = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(before, after)
    assert all(not layer.self_attn.o_proj._forward_pre_hooks for layer in model.model.layers)
    assert {name: parameter.requires_grad for name, parameter in model.named_parameters()} == trainable
    assert {name: module.training for name, module in model.named_modules()} == modes
    assert all(parameter.grad is None for parameter in model.parameters())


def test_ablating_a_layer_silences_lora_on_o_proj_too(tiny_model_dir, tiny_model, task):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    lora = LoraConfig(r=2, target_modules=["q_proj", "o_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(_fresh_model(tiny_model_dir), lora)
    tokenizer, (spec, examples) = tiny_model[1], task
    o_proj = peft_model.base_model.model.model.layers[0].self_attn.o_proj
    assert type(o_proj).__name__ == "Linear" and hasattr(o_proj, "lora_A")  # PEFT's wrapper is what we hook
    outputs = []
    capture = o_proj.register_forward_hook(lambda module, args, output: outputs.append(output))
    batch = answer_batches(tokenizer, spec, examples[:2], batch_size=2)[0]
    with torch.no_grad(), HeadGates(peft_model, requires_grad=False) as gates:
        for head in range(4):
            gates.ablate(0, head)
        peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    capture.remove()
    assert torch.count_nonzero(outputs[0]) == 0  # base and LoRA paths both saw the gated (zero) input

    adapted = activation_pattern(peft_model, tokenizer, spec, examples, mode="signed")
    with peft_model.disable_adapter():
        base = activation_pattern(peft_model, tokenizer, spec, examples, mode="signed")
    plain = activation_pattern(tiny_model[0], tokenizer, spec, examples, mode="signed")
    np.testing.assert_allclose(base, plain, rtol=1e-4, atol=1e-8)
    assert not np.allclose(adapted, base)
    assert all(p.requires_grad for name, p in peft_model.named_parameters() if "lora_" in name)


def test_bf16_model_gets_float32_gates_and_a_matching_pattern(tiny_model_dir, tiny_model, task):
    model = _fresh_model(tiny_model_dir, torch.bfloat16)
    pattern = activation_pattern(model, tiny_model[1], *task, mode="abs")
    reference = activation_pattern(tiny_model[0], tiny_model[1], *task, mode="abs")
    assert pattern.dtype == np.float64 and np.isfinite(pattern).all()
    assert np.corrcoef(pattern.ravel(), reference.ravel())[0, 1] > 0.99


def test_save_and_load_pattern(tmp_path):
    pattern = np.arange(6, dtype=float).reshape(2, 3)
    npy_path, csv_path = save_pattern(pattern, tmp_path, "base", "nli")
    assert npy_path == tmp_path / "heads" / "base__nli.npy"
    np.testing.assert_array_equal(load_pattern(tmp_path, "base", "nli"), pattern)
    table = pd.read_csv(csv_path)
    assert list(table.columns) == ["layer", "head", "score"]
    assert table.loc[(table.layer == 1) & (table["head"] == 2), "score"].item() == 5.0
    assert not list((tmp_path / "heads").glob(".*"))  # no temporary files left behind


def test_concentration_statistics_on_known_inputs():
    assert gini(np.ones((3, 4))) == pytest.approx(0.0)
    one_hot = np.zeros(10)
    one_hot[3] = -2.0
    assert gini(one_hot) == pytest.approx(0.9)
    assert coefficient_of_variation(np.full(5, 2.0)) == pytest.approx(0.0)
    assert coefficient_of_variation(one_hot) == pytest.approx(3.0)  # std sqrt(9)*0.2 over mean 0.2
    assert gini(np.zeros(4)) == 0.0 and coefficient_of_variation(np.zeros(4)) == 0.0

    delta = np.array([[0.1, -0.5], [0.7, 0.2]])
    top = top_heads(delta, 2)
    assert top[["layer", "head"]].values.tolist() == [[1, 0], [1, 1]] and top.change.tolist() == [0.7, 0.2]
    shift = PatternShift(top_k=1).fit(np.ones((2, 2)), np.array([[1.0, 1.0], [1.0, 5.0]]))
    assert shift.gini_before_ == 0.0 and shift.gini_after_ > 0.3 and shift.cv_after_ > shift.cv_before_
    assert shift.top_gained_.iloc[0].tolist() == [1, 1, 4.0]
    correlation = pattern_correlation({"a": delta, "b": 2 * delta + 1, "c": -delta})
    assert correlation.loc["a", "b"] == pytest.approx(1.0) and correlation.loc["a", "c"] == pytest.approx(-1.0)


def test_head_combination_recovers_known_weights():
    rng = np.random.default_rng(0)
    basics = {name: rng.normal(size=(6, 9)) for name in ("math", "code", "sentiment")}
    target = 0.6 * basics["math"] + 0.3 * basics["code"] + 0.1 * basics["sentiment"]
    fitted = HeadCombination().fit(target, basics)
    np.testing.assert_allclose(fitted.weights_.values, [0.6, 0.3, 0.1], atol=1e-8)
    assert fitted.r2_ == pytest.approx(1.0) and np.abs(fitted.residual_).max() < 1e-8
    assert fitted.mixture_proportions().sum() == pytest.approx(1.0)

    with_negative = 0.8 * basics["math"] - 0.4 * basics["code"]
    free = HeadCombination(non_negative=False).fit(with_negative, basics)
    assert free.weights_["code"] == pytest.approx(-0.4)
    clipped = HeadCombination(non_negative=True).fit(with_negative, basics)
    assert (clipped.weights_ >= 0).all() and clipped.weights_["code"] == 0.0 and clipped.r2_ < 1
    with pytest.raises(ValueError, match="non-negative"):
        free.mixture_proportions()

    shifted = HeadCombination(fit_intercept=True).fit(target + 0.25, basics)
    assert shifted.intercept_ == pytest.approx(0.25) and shifted.r2_ == pytest.approx(1.0)
    with pytest.raises(ValueError, match="all weights are zero"):
        HeadCombination().fit(-basics["math"], {"math": basics["math"]}).mixture_proportions()


def test_head_combination_r2_is_tested_against_shuffled_heads():
    rng = np.random.default_rng(1)
    basics = {name: rng.normal(size=(6, 9)) for name in ("math", "code")}
    real = HeadCombination(n_permutations=500).fit(0.7 * basics["math"] + rng.normal(0, 0.3, (6, 9)), basics)
    assert real.r2_ > 0.8 and real.r2_p_value_ < 0.01 and len(real.r2_null_) == 500
    # Every head less active after training, as when patterns mirror the loss: a common shift, no head structure.
    loss_like = {name: -1 + rng.normal(0, 0.05, (6, 9)) for name in ("math", "code")}
    mirrored = HeadCombination(n_permutations=500).fit(-1 + rng.normal(0, 0.05, (6, 9)), loss_like)
    assert mirrored.r2_p_value_ > 0.05  # whatever its R², shuffled heads do as well
    assert np.isnan(HeadCombination().fit(basics["math"], basics).r2_p_value_)  # no permutations asked


def test_head_combination_is_scored_on_held_out_probe_items():
    rng = np.random.default_rng(2)
    shape = (10, 9)
    basics_a = {f"task{i}": rng.normal(size=shape) for i in range(8)}
    # The same heads matter on both probe sets, measured with independent noise.
    basics_b = {name: change + rng.normal(0, 0.3, shape) for name, change in basics_a.items()}
    real = HeadCombination(n_permutations=300).fit(0.8 * basics_a["task0"] + rng.normal(0, 0.3, shape), basics_a)
    real.held_out(0.8 * basics_b["task0"] + rng.normal(0, 0.3, shape), basics_b)
    assert real.held_out_r2_ > 0.6 and real.held_out_p_value_ < 0.01 and len(real.held_out_null_) == 300
    assert real.held_out_r2_ < real.r2_  # out of sample explains less than in sample
    # A complex change that is pure noise: eight basic tasks fit some of it in sample, none of it out of sample.
    noise = HeadCombination(n_permutations=300).fit(rng.normal(size=shape), basics_a)
    noise.held_out(rng.normal(size=shape), basics_b)
    assert noise.r2_ > 0.05 and noise.held_out_r2_ < 0.05 and noise.held_out_p_value_ > 0.05
    np.testing.assert_allclose(noise.predict(basics_a), noise.predict(basics_a).reshape(shape))
    with pytest.raises(ValueError, match="no change given for basic task 'task7'"):
        noise.held_out(rng.normal(size=shape), {name: basics_b[name] for name in list(basics_b)[:7]})
    with pytest.raises(ValueError, match="has shape"):
        noise.held_out(rng.normal(size=shape), {name: change[:5] for name, change in basics_b.items()})


def test_unit_change_ignores_a_common_scale():
    from crosstask.heads.combination import unit_change

    before = np.abs(np.random.default_rng(3).normal(size=(4, 3)))
    assert np.abs(unit_change(before, 0.2 * before)).max() < 1e-12  # every head less active by the same factor
    moved = before.copy()
    moved[0, 0] *= 3
    assert unit_change(before, 0.2 * moved)[0, 0] > 0 and (unit_change(before, 0.2 * moved)[1:] <= 0).all()


def test_compute_run_patterns_writes_every_cell_once(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)  # the shared finished run stays read-only
    first = compute_run_patterns(run_dir, n_items=4, batch_size=4)
    assert len(first) == 4 * 4 and first.computed.all()  # base + 3 adapters, 4 targets
    for row in first.itertuples():
        pattern = np.load(row.npy)
        assert pattern.shape == (2, 4) and np.isfinite(pattern).all()
        assert len(pd.read_csv(row.csv)) == 8
    patterns = {row.model: np.load(row.npy) for row in first.itertuples() if row.task == "sentiment_binary"}
    assert not np.allclose(patterns["base"], patterns["sentiment_binary"])  # the adapter moved the pattern

    again = compute_run_patterns(run_dir, n_items=4, batch_size=4)
    assert not again.computed.any()
    stored = Store(run_dir / "results.sqlite").patterns()
    assert len(stored) == 16 and set(stored["items"]) == {4}
    np.testing.assert_array_equal(Store(run_dir / "results.sqlite").pattern("base", "sentiment_binary"),
                                  patterns["base"])
    (run_dir / "heads" / "base__nli.npy").unlink()  # an export is rewritten from the store, not recomputed
    assert not compute_run_patterns(run_dir, n_items=4, batch_size=4).computed.any()
    assert (run_dir / "heads" / "base__nli.npy").is_file()

    changed = compute_run_patterns(run_dir, models=["base"], tasks=["nli"], n_items=4, mode="signed")
    assert changed.computed.all() and len(changed) == 1
