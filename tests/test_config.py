from pathlib import Path

import pytest

from crosstask.config import ConfigError, load_experiment, parse_experiment

MINIMAL = {"name": "t", "sources": ["sentiment_binary"], "targets": ["nli"]}


def test_defaults_and_mapping_entries():
    experiment = parse_experiment({
        **MINIMAL,
        "sources": ["sentiment_binary", {"task": "sentiment_binary", "name": "sb_noisy", "noise": 0.5}],
        "lora": {"r": 4},
    })
    assert [ref.label for ref in experiment.source_refs] == ["sentiment_binary", "sb_noisy"]
    assert experiment.source_refs[1].noise == 0.5
    assert experiment.lora.r == 4 and experiment.lora.alpha == 16
    assert experiment.base_model == "smollm2-135m-instruct"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"trian_examples": 5}, "trian_examples: unknown key"),
        ({"lora": {"r": 0}}, "lora.r"),
        ({"lora": {"rank": 8}}, "lora.rank: unknown key"),
        ({"sources": [{"task": "nli", "nosie": 0.1}]}, "nosie: unknown key"),
        ({"sources": [{"task": "nli", "noise": 2}]}, "noise"),
        ({"sources": ["nli", "nli"]}, "repeated: ['nli']"),
        ({"targets": [{"task": "nli", "name": "base"}]}, "'base' is reserved"),
        ({"sources": []}, "sources"),
        ({"name": "has space"}, "name"),
        ({"sources": [{"task": "nli", "lora": {"epoch": 3}}]}, "sources.0.lora.epoch: unknown key"),
        ({"sources": [{"task": "nli", "lora": {"epochs": 0}}]}, "sources.0.lora.epochs"),
        ({"targets": [{"task": "nli", "lora": {"epochs": 3}}]}, "lora sets how an adapter trains"),
        ({"eval": {"generate_batch_size": 0}}, "eval.generate_batch_size: Input should be greater than or equal to 1"),
    ],
)
def test_bad_settings_name_the_key(change, message):
    with pytest.raises(ConfigError) as error:
        parse_experiment({**MINIMAL, **change})
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_and_malformed_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsources: [a, b\n")
    with pytest.raises(ConfigError, match=r"malformed YAML \(line \d+"):
        load_experiment(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_experiment(scalar)


def test_compact_dump_round_trips():
    experiment = parse_experiment({**MINIMAL, "sources": ["sentiment_binary", {"task": "nli", "noise": 0.2}]})
    compact = experiment.compact_dump()
    assert compact["sources"] == ["sentiment_binary", {"task": "nli", "noise": 0.2}]
    assert parse_experiment(compact) == experiment


def test_variants_expand_into_extra_sources_with_clear_errors():
    experiment = parse_experiment({"name": "x", "targets": ["nli"], "sources": [
        {"task": "sentiment_binary", "variants": ["balanced", {"imbalanced": {"positive": 0.8}}, {"mislabeled": 0.3},
                                                  {"subsample": 50}]}]})
    refs = {ref.label: ref for ref in experiment.source_refs}
    assert list(refs) == ["sentiment_binary", "sentiment_binary+balanced", "sentiment_binary+imbalanced-positive0.8",
                          "sentiment_binary+mislabeled0.3", "sentiment_binary+subsample50"]
    assert refs["sentiment_binary+balanced"].balance == "uniform"
    assert refs["sentiment_binary+mislabeled0.3"].noise == 0.3 and refs["sentiment_binary+subsample50"].examples == 50
    assert experiment.variant_pairs()[0] == ("sentiment_binary", "sentiment_binary+balanced")
    assert parse_experiment(experiment.compact_dump()).source_refs == experiment.source_refs
    for bad, message in [({"mislabeled": 2}, "in \\(0, 1\\]"), ({"imbalanced": 0.9}, "name the majority label"),
                         ("upsampled", "unknown variant 'upsampled'"), ({"subsample": 0}, "positive whole number")]:
        with pytest.raises(ConfigError, match=message):
            parse_experiment({"name": "x", "targets": ["nli"], "sources": [{"task": "nli", "variants": [bad]}]})
    with pytest.raises(ConfigError, match="apply to sources only"):
        parse_experiment({"name": "x", "sources": ["nli"], "targets": [{"task": "nli", "variants": ["balanced"]}]})
    with pytest.raises(ConfigError, match="repeated"):
        parse_experiment({"name": "x", "targets": ["nli"], "sources": [
            {"task": "nli", "variants": ["balanced"]}, {"task": "nli", "name": "nli+balanced"}]})


def test_a_source_can_override_lora_settings_and_its_variants_inherit_them():
    experiment = parse_experiment({**MINIMAL, "lora": {"r": 4, "epochs": 1},
                                   "sources": ["sentiment_binary",
                                               {"task": "nli", "lora": {"epochs": 3}, "variants": ["balanced"]}]})
    plain, nli, balanced = experiment.source_refs
    assert experiment.lora_for(plain) == experiment.lora
    assert experiment.lora_for(nli).epochs == 3 and experiment.lora_for(nli).r == 4
    assert experiment.lora_for(balanced) == experiment.lora_for(nli)
    assert experiment.compact_dump()["sources"][1]["lora"] == {"epochs": 3}


def test_a_bad_mapping_entry_names_only_what_is_wrong_in_it():
    with pytest.raises(ConfigError) as error:
        parse_experiment({**MINIMAL, "sources": [{"task": "nli", "lora": {"epoch": 3}}]})
    assert str(error.value) == "experiment: sources.0.lora.epoch: unknown key"


def _settings_models(model) -> list:
    """``model`` and every settings model its fields hold, however nested (lists, unions, dicts)."""
    import typing

    from pydantic import BaseModel

    found, pending = [], [model]
    while pending:
        current = pending.pop()
        if current in found:
            continue
        found.append(current)
        for field in current.model_fields.values():
            types = [field.annotation]
            while types:
                kind = types.pop()
                types.extend(typing.get_args(kind))
                if isinstance(kind, type) and issubclass(kind, BaseModel):
                    pending.append(kind)
    return found


def test_the_readme_yaml_reference_is_a_valid_experiment_that_names_every_setting():
    import re

    import yaml

    from crosstask.config import Experiment

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    reference = readme.split("\n## YAML reference\n", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    parse_experiment(yaml.safe_load(reference), "README's YAML reference")  # copied as it is, it runs
    undocumented = [f"{model.__name__}.{name}" for model in _settings_models(Experiment)
                    for name, field in model.model_fields.items()
                    if not re.search(rf"(?<![\w.]){re.escape(field.alias or name)}:", reference)]  # a key or a commented one
    assert not undocumented, f"settings missing from the README's YAML reference: {undocumented}"
