import subprocess
import sys

import pytest


def crosstask(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "crosstask.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_tasks_lists_every_builtin_with_an_example():
    result = crosstask("tasks")
    assert result.returncode == 0
    for name in ["sentiment_binary", "sentiment_3way", "rating_5star", "arithmetic_large", "word_problems",
                 "paraphrase", "nli", "toxicity"]:
        assert f"== {name} " in result.stdout
    assert "#### " in result.stdout and "Sentiment: " in result.stdout


@pytest.mark.parametrize("content, message", [
    ("name: x\nsources: [nli]\ntargets: [nope]\n", "unknown task 'nope'"),
    ("name: x\nbase_model: ./missing\nsources: [nli]\ntargets: [nli]\n", "unknown model './missing'"),
    ("name: x\nsources: [nli\n", "malformed YAML"),
    ("name: x\nsources: [nli]\ntargets: [nli]\nlora: {rank: 4}\n", "lora.rank: unknown key"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, content, message):
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    result = crosstask("run", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr and result.stderr.startswith("crosstask: error:")
    assert not (tmp_path / "out").exists()


def test_missing_experiment_file_and_report_dir(tmp_path):
    assert "not found" in crosstask("run", str(tmp_path / "none.yaml")).stderr
    result = crosstask("report", str(tmp_path))
    assert result.returncode == 2 and "not a crosstask run directory" in result.stderr


def test_the_readme_cli_section_names_every_command_and_option():
    import argparse
    from pathlib import Path

    from crosstask.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## CLI\n", 1)[1].split("\n## ", 1)[0]
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    undocumented = [f"crosstask {name} {option}".strip() for name, parser in commands.choices.items()
                    for option in ["", *(flag for action in parser._actions for flag in action.option_strings
                                         if flag.startswith("--") and flag != "--help")]
                    if f"crosstask {name}" not in section or (option and option not in section)]
    assert not undocumented, f"missing from the README's CLI section: {undocumented}"
