"""Greedy generation: crosstask's ``hf`` backend against transformers' ``generate`` in batches.

The peer is what lm-evaluation-harness's ``generate_until`` does with a Hugging Face model: prompts
sorted by length, left-padded batches of ``--batch-size``, ``model.generate`` (greedy) with the stop
strings as ``stop_strings``; each batch runs until its last row stops. crosstask answers the same token
ids through its backend: rows leave the batch when they end (stop string, end of sequence, or the
answer's end, e.g. GSM8K's ``#### n`` line) and waiting prompts take their place at once. Same model,
dtype and batch size; the tools interleaved, medians of ``--repeats`` runs, both answers cut at the
task's stop rules and compared.

    python bench/generation.py [--task gsm8k] [--data-dir ../shared/data] [--fewshot 1] [--items 48]
                               [--batch-size 16] [--repeats 3] [--precision auto|fp32|bf16]

GSM8K needs a local copy (``../shared/data`` has a sample); ``--task word_problems`` runs offline on
the built-in look-alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from crosstask.backends.hf import HFBackend
from crosstask.config import TaskRef
from crosstask.devices import planned_dtype
from crosstask.models import load_model, load_tokenizer, resolve_model
from crosstask.requests import GenerateRequest
from crosstask.tasks.data import build_examples, resolve, with_fewshot
from crosstask.tokenization import encode_prompt


@torch.inference_mode()
def with_generate(model, tokenizer, requests: list[GenerateRequest], batch_size: int) -> list[str]:
    """Answers by ``model.generate``, batch by batch in order of prompt length (lm-eval's way)."""
    ids = [encode_prompt(tokenizer, request.prompt) for request in requests]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    rule, texts = requests[0], [""] * len(requests)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        padded = tokenizer.pad({"input_ids": [ids[i] for i in batch]}, padding_side="left", return_tensors="pt")
        inputs, mask = padded["input_ids"].to(model.device), padded["attention_mask"].to(model.device)
        out = model.generate(input_ids=inputs, attention_mask=mask, max_new_tokens=rule.max_new_tokens,
                             do_sample=False, stop_strings=list(rule.stop) or None, tokenizer=tokenizer,
                             pad_token_id=tokenizer.pad_token_id)
        for row, index in enumerate(batch):
            texts[index] = rule.cut(tokenizer.decode(out[row, inputs.shape[1] :], skip_special_tokens=True))
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--fewshot", type=int, default=1)
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    args = parser.parse_args()

    data = {"path": "gsm8k_test.jsonl"} if args.task == "gsm8k" else None
    ref = TaskRef(task=args.task, fewshot=args.fewshot, data=data)
    items = build_examples(ref, "test" if data else "eval", args.items, 0, data_dir=args.data_dir)
    shots = build_examples(ref, "train", args.fewshot, 0, data_dir=args.data_dir) if args.fewshot else []
    spec = with_fewshot(resolve(ref).spec, shots)
    requests = [GenerateRequest(spec.prompt(item), spec.max_new_tokens, spec.stop, spec.answer_end) for item in items]

    resolved = resolve_model("smollm2-135m-instruct")
    dtype = planned_dtype(args.precision, "cpu")
    model, tokenizer = load_model(resolved, dtype), load_tokenizer(resolved)
    model.eval()
    backend = HFBackend.wrap(model, tokenizer, args.batch_size)
    tools = {"crosstask": lambda: [g.text for g in backend.generate(requests)],
             "generate": lambda: with_generate(model, tokenizer, requests, args.batch_size)}
    times: dict[str, list[float]] = {tool: [] for tool in tools}
    answers: dict[str, list[str]] = {}
    for repeat in range(args.repeats):
        for tool, run in tools.items():
            started = time.perf_counter()
            answers[tool] = run()
            times[tool].append(time.perf_counter() - started)
            print(json.dumps({"repeat": repeat, "tool": tool, "seconds": round(times[tool][-1], 2)}), flush=True)

    ours, theirs = (statistics.median(times[tool]) for tool in tools)
    tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in answers["crosstask"])
    same = sum(a == b for a, b in zip(answers["crosstask"], answers["generate"]))
    print(f"\n{args.task}, {args.fewshot}-shot, {len(items)} items, {dtype}, batch {args.batch_size}, "
          f"max_new_tokens {spec.max_new_tokens}, medians of {args.repeats}:\n")
    print("| crosstask s | generate s | speed-up | answer tokens | same answers |")
    print("|---|---|---|---|---|")
    print(f"| {ours:.1f} | {theirs:.1f} | **{theirs / ours:.2f}×** | {tokens} | {same} / {len(items)} |")


if __name__ == "__main__":
    main()
