import copy
from pathlib import Path

import pytest
import yaml

from driftstream.config import AdwinConfig, ConfigError, load_config
from driftstream.replay.sweep import (
    MAX_SETTINGS,
    NO_SWEEP,
    Sweep,
    SweepError,
    expand,
    load_settings,
    parse_set,
)

# parse_config only parses: the baseline file need not exist.
RAW = {"models": {"m": {"baseline": "b.json"}}}


def sweeps(*texts: str) -> list[Sweep]:
    return [parse_set(text) for text in texts]


# ----------------------------------------------------------------------------- parse_set


def test_parse_set_splits_the_path_and_reads_values_as_yaml_scalars():
    sweep = parse_set("models.m.window.size=50,0.5,true,psi,null, 7 ")
    assert sweep.path == ("models", "m", "window", "size")
    assert sweep.key == "models.m.window.size"
    assert sweep.values == (50, 0.5, True, "psi", None, 7)
    assert [type(v) for v in sweep.values[:4]] == [int, float, bool, str]


def test_values_equal_in_python_but_of_other_types_are_different_values():
    assert parse_set("k=1,1.0,true").values == (1, 1.0, True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models.m.window.size", "expected KEY=V1,V2,... (no '=')"),
        ("=5", "the key before '=' is empty"),
        ("  =5", "the key before '=' is empty"),
        ("models..size=5", "the key 'models..size' has an empty part"),
        ("models.m.=5", "has an empty part"),
        ("k=", "no values after '='"),
        ("k= ", "no values after '='"),
        ("k=1,,2", "value 2 is empty"),
        ("k=1,", "value 2 is empty"),
        ("k=1,2,1", "value 1 is listed twice"),
        ("k=[1", "value '[1' is not a YAML scalar"),
        ("k={a: 1}", "value '{a: 1}' is not a scalar"),
    ],
)
def test_a_bad_set_argument_is_refused_naming_it(text, message):
    with pytest.raises(SweepError) as caught:
        parse_set(text)
    assert str(caught.value).startswith(f"--set {text!r}: ")
    assert message in str(caught.value)


# ----------------------------------------------------------------------------- expand


def test_without_sweeps_the_config_is_given_once():
    (setting,) = expand(RAW, [], "driftstream.yaml")
    assert (setting.index, setting.name, setting.values) == (0, NO_SWEEP, {})
    assert setting.raw == RAW
    assert setting.raw is not RAW
    assert setting.config.models["m"].baseline == Path("b.json")


def test_the_cross_product_varies_the_first_flag_slowest():
    settings = expand(
        RAW,
        sweeps(
            "models.m.detectors.page_hinkley.threshold=50,100",
            "models.m.window.size=500,1000,2000",
        ),
        "driftstream.yaml",
    )
    assert [s.index for s in settings] == list(range(6))
    pairs = [
        (s.config.models["m"].detectors.page_hinkley.threshold, s.config.models["m"].window.size)
        for s in settings
    ]
    assert pairs == [(50, 500), (50, 1000), (50, 2000), (100, 500), (100, 1000), (100, 2000)]
    assert settings[1].name == (
        "models.m.detectors.page_hinkley.threshold=50, models.m.window.size=1000"
    )
    assert settings[1].values == {
        "models.m.detectors.page_hinkley.threshold": 50,
        "models.m.window.size": 1000,
    }


def test_values_are_set_in_a_copy_creating_the_sections_the_file_leaves_out():
    raw = {"models": {"m": {"baseline": "b.json", "window": {"kind": "count"}, "labels": None}}}
    before = copy.deepcopy(raw)
    (setting,) = expand(
        raw,
        sweeps(
            "models.m.detectors.page_hinkley.threshold=50",
            "models.m.window.size=400",
            "models.m.labels.min_count=10",
        ),
    )
    assert raw == before
    assert setting.raw == {
        "models": {
            "m": {
                "baseline": "b.json",
                "window": {"kind": "count", "size": 400},
                "detectors": {"page_hinkley": {"threshold": 50}},
                "labels": {"min_count": 10},
            }
        }
    }
    model = setting.config.models["m"]
    assert model.detectors.page_hinkley.threshold == 50.0
    assert model.detectors.adwin == AdwinConfig()  # the section's other defaults stay
    assert model.labels is not None and model.labels.min_count == 10


def test_dotted_model_ids_and_feature_names_match_the_longest_existing_key():
    raw = {
        "models": {
            "fraud": {"baseline": "f.json"},
            "fraud.v2": {"baseline": "f2.json", "features": {"geo.lat": {"enabled": True}}},
        }
    }
    (setting,) = expand(
        raw,
        sweeps(
            "models.fraud.v2.window.size=300",
            "models.fraud.window.size=700",
            "models.fraud.v2.features.geo.lat.enabled=false",
        ),
    )
    assert setting.config.models["fraud.v2"].window.size == 300
    assert setting.config.models["fraud"].window.size == 700
    assert setting.config.models["fraud.v2"].features["geo.lat"].enabled is False
    assert "v2" not in setting.raw["models"]["fraud"]


def test_a_missing_key_below_a_model_is_created_part_by_part():
    (setting,) = expand(RAW, sweeps("models.m.features.amount.statistics.psi.threshold=0.3"))
    feature = setting.config.models["m"].features["amount"]
    assert feature.statistics is not None
    assert feature.statistics["psi"].threshold == 0.3


def test_a_misspelt_setting_is_named():
    with pytest.raises(SweepError) as caught:
        expand(RAW, sweeps("models.m.detectors.page_hinkly.threshold=50"), "driftstream.yaml")
    assert str(caught.value) == (
        "--set models.m.detectors.page_hinkly.threshold: no such setting in the config "
        "(models.m.detectors: extra key 'page_hinkly')"
    )


def test_a_misspelt_top_level_setting_is_named():
    with pytest.raises(SweepError) as caught:
        expand(RAW, sweeps("kafak.batch_size=5"))
    assert str(caught.value) == (
        "--set kafak.batch_size: no such setting in the config ((top level): extra key 'kafak')"
    )


def test_a_key_outside_a_fixed_set_of_keys_is_named():
    with pytest.raises(SweepError) as caught:
        expand(RAW, sweeps("models.m.features.f.statistics.psx.threshold=0.1"))
    message = str(caught.value)
    assert message.startswith(
        "--set models.m.features.f.statistics.psx.threshold: no such setting in the config "
        "(models.m.features.f.statistics: 'psx' is not a key here: Input should be 'psi'"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "models.m.window.size=100,big",
            "--set models.m.window.size=big: models.m.window.size: Input should be a valid integer",
        ),
        (
            "models.m.window.size=100,-1",
            "--set models.m.window.size=-1: models.m.window.size: Input should be greater than 0",
        ),
        (
            "models.m.detectors.page_hinkley.mode=up,sideways",
            "--set models.m.detectors.page_hinkley.mode=sideways: "
            "models.m.detectors.page_hinkley.mode: Input should be 'up', 'down' or 'both'",
        ),
        (
            "models.m.window=5",
            "--set models.m.window=5: models.m.window: Input should be a valid dictionary",
        ),
    ],
)
def test_a_bad_value_is_named_with_its_flag(text, message):
    with pytest.raises(SweepError) as caught:
        expand(RAW, sweeps("models.m.category_cap=10", text), "driftstream.yaml")
    assert str(caught.value).startswith(message)


def test_a_path_into_a_model_the_config_lacks_is_named():
    raw = {"models": {"m": {"baseline": "b.json"}, "n.1": {"baseline": "n.json"}}}
    with pytest.raises(SweepError) as caught:
        expand(raw, sweeps("models.x.window.size=5"))
    assert str(caught.value) == (
        "--set models.x.window.size: 'x' is not a model in the config (models: m, n.1)"
    )
    with pytest.raises(SweepError, match="'n' is not a model in the config"):
        expand(raw, sweeps("models.n.window.size=5"))


def test_a_path_through_a_value_that_is_no_mapping_is_named():
    raw = {"models": {"m": {"baseline": "b.json", "window": 5}}}
    with pytest.raises(SweepError) as caught:
        expand(raw, sweeps("models.m.window.size=5"))
    assert str(caught.value) == (
        "--set models.m.window.size: models.m.window is 5, not a mapping of keys"
    )


def test_a_problem_no_flag_caused_is_reported_with_the_setting():
    raw = {"models": {"m": {"baseline": "b.json", "category_cap": 0}}}
    with pytest.raises(SweepError) as caught:
        expand(raw, sweeps("models.m.window.size=50"), "driftstream.yaml")
    assert str(caught.value) == (
        "driftstream.yaml: with models.m.window.size=50: "
        "models.m.category_cap: Input should be greater than or equal to 1"
    )
    with pytest.raises(ConfigError) as caught_config:
        expand(raw, [], "driftstream.yaml")
    assert "models.m.category_cap: Input should be greater" in str(caught_config.value)


def test_the_same_key_twice_is_refused():
    raw = {"models": {"a.b": {"baseline": "b.json"}}}
    with pytest.raises(SweepError) as caught:
        expand(raw, sweeps("models.a.b.window.size=5", "models.a.b.window.size=6"))
    assert str(caught.value) == (
        "--set models.a.b.window.size: the same key as --set models.a.b.window.size; "
        "list all its values in one flag"
    )


def test_the_number_of_settings_is_capped():
    many = sweeps(
        "models.m.window.size=1,2,3,4,5",
        "models.m.category_cap=1,2,3,4,5",
        "models.m.compare_previous=true,false,null",
    )
    with pytest.raises(SweepError) as caught:
        expand(RAW, many)
    assert str(caught.value).startswith(
        f"the --set flags ask for 5 x 5 x 3 = 75 settings; at most {MAX_SETTINGS} run"
    )
    eight = ",".join(str(n) for n in range(1, 9))
    allowed = sweeps(f"models.m.window.size={eight}", f"models.m.category_cap={eight}")
    assert len(expand(RAW, allowed)) == 64
    with pytest.raises(SweepError, match="ask for 8 x 8 = 64 settings; at most 10 run"):
        expand(RAW, allowed, limit=10)


def test_baselines_follow_the_config_directory_as_load_config_has_them(tmp_path):
    raw = {"models": {"m": {"baseline": "b.json"}, "n": {"baseline": "/data/n.json"}}}
    path = tmp_path / "conf" / "driftstream.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw))
    (setting,) = expand(raw, sweeps("models.m.window.size=9"), path, config_dir=path.parent)
    assert setting.config.models["m"].baseline == path.parent / "b.json"
    assert setting.config.models["n"].baseline == Path("/data/n.json")
    assert setting.raw["models"]["m"]["baseline"] == "b.json"  # as written

    (given,) = load_settings(path, [])
    assert given.config == load_config(path)
    (swept,) = load_settings(path, sweeps("models.m.window.size=9"))
    assert swept.config == setting.config


def test_load_settings_refuses_a_missing_or_empty_config_like_load_config(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "absent.yaml", [])
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="Input should be a valid dictionary"):
        load_settings(empty, [])
    with pytest.raises(SweepError, match="the config is not a mapping"):
        load_settings(empty, sweeps("models.m.window.size=5"))
