"""`crosstask heads`: patterns of a whole run, the report section and the combination of basic tasks."""

import shutil

import pandas as pd

from crosstask.store import Store


def test_heads_command_adds_the_section_with_combination(tiny_run, tmp_path, capsys):
    from crosstask.cli import main

    run_dir = shutil.copytree(tiny_run, tmp_path / "run")
    assert main(["heads", str(run_dir), "--items", "4", "--complex", "word_problems",
                 "--basics", "sentiment_binary", "nli", "--dynamics", "nli", "--every", "1", "--quiet"]) == 0
    analysis = run_dir / "analysis"
    summary = pd.read_csv(analysis / "heads_summary.csv")
    assert len(summary) == 3 * 4 and summary["gini_after"].between(0, 1).all()
    combination = pd.read_csv(analysis / "heads_combination.csv")
    assert list(combination["basic"]) == ["sentiment_binary", "nli"] and (combination["weight"] >= 0).all()
    assert combination["r2_p_value"].between(0, 1).all() and combination["r2_null_median"].notna().all()
    assert (combination["items_per_half"] == 2).all() and combination["r2_fit"].notna().all()
    patterns = Store(run_dir / "results.sqlite").patterns()
    halves = patterns[patterns["task"].str.startswith(("fit:", "held-out:"))]
    assert sorted(halves["task"].unique()) == ["fit:word_problems", "held-out:word_problems"]
    assert set(halves["model"]) == {"base", "word_problems", "sentiment_binary", "nli"} and set(halves["items"]) == {2}
    for name in ("heads_base.png", "heads_change.png", "heads_concentration.png", "heads_task_correlation.png",
                 "heads_combination.png"):
        assert (analysis / name).is_file()
    curve = pd.read_csv(run_dir / "heads" / "dynamics_nli__nli.csv")
    assert list(curve["step"]) == [0, 1, 2, 3] and curve["corr_to_final"].iloc[-1] == 1
    assert (analysis / "heads_dynamics_nli__nli.png").is_file()
    report = (run_dir / "report.html").read_text()
    assert "Attention heads" in report and "Gini" in report and "Pattern dynamics" in report
    assert "shuffled over the heads" in report and "held-out probe items" in report and "head-pattern similarity" in report
    compared = pd.read_csv(analysis / "heads_prediction.csv").set_index("feature_set")
    assert list(compared.index) == ["without", "with"] and compared["mae"].notna().all()
    source_patterns = run_dir / "heads" / "base__source:nli.npy"
    assert source_patterns.is_file()  # the base model on the nli source's training items
    assert main(["heads", str(run_dir), "--model", "base", "--task", "nli", "--items", "4", "--quiet"]) == 0
    assert "False" in capsys.readouterr().out  # reused, not recomputed
    assert main(["heads", str(run_dir), "--complex", "toxicity", "--quiet", "--items", "4"]) == 2
    assert "not a source of this run" in capsys.readouterr().err
