"""The sandbox that scores generated code, and the `code` task family that uses it."""

from __future__ import annotations

import os
import random
import socket

import pytest

from crosstask.backends.hf import HFBackend
from crosstask.config import TaskRef
from crosstask.evaluation import evaluate
from crosstask.sandbox import OUTPUT_TAIL, run_tests
from crosstask.tasks import build_examples, get_family
from crosstask.tasks.base import Example, TaskError, TaskSpec
from crosstask.tasks.generators.code import extract_python_function

CODE = get_family("code")
DOUBLE_TESTS = "assert double(2) == 4\nassert double(-3) == -6\nassert double(0) == 0"


def test_correct_code_passes_and_wrong_code_fails():
    passed = run_tests("def double(x):\n    return 2 * x\n", DOUBLE_TESTS)
    assert passed.passed and passed.status == "passed"
    assert {"rlimits", "audit"} <= set(passed.layers)
    wrong = run_tests("def double(x):\n    return x + 2\n", DOUBLE_TESTS)
    assert (wrong.passed, wrong.status) == (False, "failed")
    assert wrong.detail == "assert double(-3) == -6  # got -1"
    assert run_tests("def double(x) return 2 * x", DOUBLE_TESTS).status == "syntax"
    crashing = run_tests("def double(x):\n    return x / 0\n", DOUBLE_TESTS)
    assert crashing.status == "error" and "ZeroDivisionError" in crashing.detail


def test_an_infinite_loop_times_out_and_leaves_no_process():
    result = run_tests("import os\nprint(os.getpid(), flush=True)\nwhile True:\n    pass\n", DOUBLE_TESTS, timeout=1)
    assert result.status == "timeout" and result.seconds < 5
    assert int(result.output.split()[0]) == result.pid
    with pytest.raises(ProcessLookupError):
        os.killpg(result.pid, 0)  # the child led its own process group: nothing of it is left


@pytest.mark.parametrize("hog", ["x = bytearray(4 * 1024 ** 3)", "x = []\nwhile True:\n    x.append(' ' * 10 ** 6)"])
def test_a_memory_hog_is_stopped(hog):
    result = run_tests(f"def double(n):\n    {hog.replace(chr(10), chr(10) + '    ')}\n", DOUBLE_TESTS)
    assert result.status == "memory"
    assert run_tests("def double(x):\n    return 2 * x\n", DOUBLE_TESTS).passed  # and the parent carries on


@pytest.fixture
def run_dir(tmp_path):
    """A fake run directory with a store the code must neither touch nor read."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.sqlite").write_bytes(b"SQLite format 3\x00 precious")
    return folder


@pytest.mark.parametrize("attack", [
    "open({outside!r}, 'w').write('x')",
    "open({store!r}, 'a').write('x')",
    "open({store!r}, 'w')",
    "import os; os.remove({store!r})",
    "import os; os.rename({store!r}, {outside!r})",
    "import os; os.mkdir({outside!r})",
    "import os; os.open({outside!r}, os.O_WRONLY | os.O_CREAT)",
    "import os, pathlib; pathlib.Path({outside!r}).write_text('x')",
    "import os; os.chdir('/'); open({outside!r}, 'w')",
    "import shutil; shutil.rmtree({run!r})",
    "open('../' * 20 + {outside!r}.lstrip('/'), 'w')",
])
def test_code_cannot_write_or_delete_outside_its_directory(run_dir, attack):
    outside = str(run_dir.parent / "written_by_code")
    snippet = attack.format(outside=outside, store=str(run_dir / "results.sqlite"), run=str(run_dir))
    result = run_tests(f"def double(x):\n    {snippet}\n    return 2 * x\n", DOUBLE_TESTS)
    assert not result.passed and result.status == "error", result
    assert not os.path.exists(outside)
    assert (run_dir / "results.sqlite").read_bytes() == b"SQLite format 3\x00 precious"
    assert sorted(p.name for p in run_dir.iterdir()) == ["results.sqlite"]


def test_code_cannot_read_the_store(run_dir):
    code = f"def double(x):\n    return len(open({str(run_dir / 'results.sqlite')!r}, 'rb').read())\n"
    result = run_tests(code, "assert double(1) == 25")
    assert result.status == "error" and "PermissionError" in result.detail


def test_code_can_use_its_scratch_directory_which_is_deleted_afterwards():
    code = ("import os\nprint(os.getcwd(), flush=True)\n"
            "def double(x):\n    with open('note.txt', 'w') as f:\n        f.write(str(2 * x))\n"
            "    os.mkdir('sub')\n    os.rename('note.txt', 'sub/note.txt')\n"
            "    value = int(open('sub/note.txt').read())\n    os.remove('sub/note.txt')\n    os.rmdir('sub')\n"
            "    return value\n")
    result = run_tests(code, DOUBLE_TESTS)
    assert result.passed, result
    scratch = result.output.strip()
    assert scratch and not os.path.exists(scratch)


def test_code_cannot_reach_the_network():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.3)
        port = listener.getsockname()[1]
        for attack in (f"socket.create_connection(('127.0.0.1', {port}), timeout=1)",
                       f"socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {port}))",
                       "socket.socket(socket.AF_UNIX)"):
            result = run_tests(f"import socket\ndef double(x):\n    {attack}\n    return 2 * x\n", DOUBLE_TESTS)
            assert result.status == "error", (attack, result)
        with pytest.raises(socket.timeout):
            listener.accept()


@pytest.mark.parametrize("attack", [
    "import subprocess; subprocess.run(['touch', {marker!r}])",
    "import os; os.system('touch ' + {marker!r})",
    "import os; os.execv('/usr/bin/touch', ['touch', {marker!r}])",
    "import os; os.posix_spawn('/usr/bin/touch', ['touch', {marker!r}], {{}})",
    "import os\n    while True:\n        os.fork()",  # a fork bomb
    "import os; os.kill(os.getppid(), 9)",
    "import ctypes; ctypes.CDLL(None).system(b'touch ' + {marker!r}.encode())",
])
def test_code_cannot_start_processes_or_signal_others(tmp_path, attack):
    marker = str(tmp_path / "marker")
    result = run_tests(f"def double(x):\n    {attack.format(marker=marker)}\n    return 2 * x\n", DOUBLE_TESTS)
    assert result.status == "error" and result.seconds < 5, result
    assert not os.path.exists(marker)


def test_code_sees_an_empty_environment(monkeypatch):
    monkeypatch.setenv("CROSSTASK_SECRET_TOKEN", "do-not-leak")
    assert run_tests("import os\ndef environment():\n    return dict(os.environ)\n", "assert environment() == {}").passed


def test_huge_output_is_capped():
    result = run_tests("def double(x):\n    while True:\n        print('x' * 10000)\n", DOUBLE_TESTS)
    assert result.status == "error" and "File too large" in result.detail
    assert len(result.output) <= OUTPUT_TAIL


@pytest.mark.parametrize("cheat", [
    "print('passed')\nimport os\nos._exit(0)",  # claims success without the secret
    "class Anything:\n    def __eq__(self, other):\n        return True\ndef double(x):\n    return Anything()",
    "class Number(int):\n    def __eq__(self, other):\n        return True\ndef double(x):\n    return Number(5)",
    "import builtins\nbuiltins.all = lambda items: True\nbuiltins.type = lambda value: int\n"
    "def double(x):\n    return [x]",
    "import sys\ndef double(x):\n    return sys._getframe(2).f_locals",
    "def double(x):\n    try:\n        1 / 0\n    except ZeroDivisionError as error:\n"
    "        return error.__traceback__.tb_frame.f_back.f_locals",
])
def test_code_cannot_fake_a_pass(cheat):
    assert not run_tests(cheat, DOUBLE_TESTS).passed


def test_ordinary_code_still_works_in_the_sandbox():
    code = ("import math, re, json, random, itertools, functools, collections, statistics, dataclasses\n"
            "from collections import namedtuple\nfrom typing import List\n"
            "Point = namedtuple('Point', 'x y')\n@dataclasses.dataclass\nclass Box:\n    value: int\n"
            "def double(x: int) -> int:\n    return Box(Point(x, 0).x).value + math.floor(x)\n"
            "if __name__ == '__main__':\n    print(double(1))\n")
    assert run_tests(code, DOUBLE_TESTS).passed


# ---------------------------------------------------------------------------------------------------
# The code family


def test_code_items_are_deterministic_and_splits_share_no_function():
    ref = TaskRef(task="code")
    eval_items = build_examples(ref, "eval", 60, seed=3)
    assert eval_items == build_examples(ref, "eval", 60, seed=3)
    train_items = build_examples(ref, "train", 300, seed=3, exclude=frozenset(e.input for e in eval_items))
    assert not {e.input for e in train_items} & {e.input for e in eval_items}
    assert not {e.target for e in train_items} & {e.target for e in eval_items}
    assert len({e.target for e in train_items}) == len(train_items)
    assert len({e.input.split("`")[1].split("(")[0] for e in train_items}) >= 60  # many function names


@pytest.mark.parametrize("options", [{}, {"solution_style": "documented", "type_hints": 1.0, "hidden_tests": 3}])
def test_every_reference_solution_passes_its_hidden_tests(options):
    examples = build_examples(TaskRef(task="code", options=options), "eval", 25, seed=11)
    for example in examples:
        asserts = example.answer.splitlines()
        assert len(asserts) == options.get("hidden_tests", 4) and all(a.startswith("assert ") for a in asserts)
        assert example.target.startswith("def ") and "\n\n" not in example.target
        result = run_tests(example.target, example.answer)
        assert result.passed, (example, result)
        name = example.target[4:].split("(")[0]
        for constant in (None, 0, 1, [], "", True, False):  # answers vary, so no constant answer passes
            with pytest.raises(AssertionError):  # our own tests and stubs: safe to run here
                exec(example.answer, {name: lambda *args, constant=constant: constant})


def test_a_plausible_wrong_solution_fails():
    rng, options = random.Random(0), CODE.options({"type_hints": 0.0})
    example = next(e for e in (CODE.make_generate_example(rng, options) for _ in range(500)) if "% 2 == 0" in e.target)
    assert run_tests(example.target, example.answer).passed
    assert not run_tests(example.target.replace("% 2 == 0", "% 2 == 1"), example.answer).passed


@pytest.mark.parametrize("generated, expected", [
    (" def f(x):\n    return x + 1", "def f(x):\n    return x + 1"),
    ("\n```python\ndef f(x):\n    return x + 1\n```\nThis function adds one.", "def f(x):\n    return x + 1"),
    ("Here is the function:\n```\ndef f(x):\n    return x + 1\n", "def f(x):\n    return x + 1"),
    (" def f(x):\n    return x + 1\nprint(f(2))\n", "def f(x):\n    return x + 1"),
    (" def f(x):\n    y = x + 1\n\n    return y\n\nThat is all.", "def f(x):\n    y = x + 1\n\n    return y"),
    (" import math\ndef f(x):\n    return math.floor(x)\n", "import math\ndef f(x):\n    return math.floor(x)"),
    (" def g(x):\n    return x\n\ndef f(x):\n    return g(x)\nExample: f(1)",
     "def g(x):\n    return x\n\ndef f(x):\n    return g(x)"),
    (" I do not know.\n", "I do not know."),
])
def test_extractor_takes_the_function_out_of_the_generation(generated, expected):
    assert extract_python_function(generated) == expected


def test_answer_ends_after_the_function_not_at_a_blank_line():
    spec = CODE.spec
    assert spec.cut(" def f(x):\n    return x\nprint(f(2))") == " def f(x):\n    return x\n"
    assert spec.cut("\n```python\ndef f(x):\n    return x\n```\nmore") == "\n```python\ndef f(x):\n    return x\n"
    assert spec.cut(" def f(x):\n    y = x\n\n    return y\n") == " def f(x):\n    y = x\n\n    return y\n"
    assert spec.cut(" Sure!\n```python\n") == " Sure!\n```python\n"  # nothing ends before the def


def test_checker_registry():
    example = CODE.make_generate_example(random.Random(4), CODE.options({}))
    assert CODE.spec.check(" " + example.target + "\nprint('done')", example)
    assert not CODE.spec.check(" def nothing():\n    pass", example)
    assert TaskSpec("wp", "Solve.", "Answer", "generate").check(" 3 + 4 = 7\n#### 7", Example("q", "t", "7"))
    with pytest.raises(TaskError, match="unknown checker 'nope'"):
        TaskSpec("bad", "Solve.", "Answer", "generate", checker="nope")


def test_generate_answers_scores_code_in_the_sandbox(tiny_model, monkeypatch):
    model, tokenizer = tiny_model
    spec, examples = CODE.spec, build_examples(TaskRef(task="code"), "eval", 3, seed=0)
    garbage = evaluate(HFBackend.wrap(model, tokenizer, 3), spec, examples)[0]  # an untrained model's text
    assert [r.correct for r in garbage] == [False] * 3
    assert [r.gold for r in garbage] == [e.answer for e in examples]

    def write_the_reference(self, module, prompts, rule, progress):  # the model "writes" each reference solution
        progress(len(prompts))
        return [rule.cut(next(" " + e.target for e in examples if spec.prompt(e) == prompt)) for prompt in prompts]

    monkeypatch.setattr(HFBackend, "_generate", write_the_reference)
    results = evaluate(HFBackend.wrap(model, tokenizer, 2), spec, examples)[0]
    assert [r.correct for r in results] == [True] * 3
    assert [r.prediction for r in results] == [e.target for e in examples]  # the stored prediction is the code
