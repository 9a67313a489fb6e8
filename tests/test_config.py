from __future__ import annotations

from pathlib import Path

import pytest

from synthloom.config import PipelineConfig, config_hash, flatten, load_config
from synthloom.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

MINIMAL = """
data:
  source: data.csv
  target: y
method:
  name: marginals
generate:
  num_rows: 10
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_every_shipped_config_is_valid() -> None:
    configs = sorted((REPO / "pipeline_configs").glob("*.yaml"))
    assert configs, "pipeline_configs/ holds at least the quickstart"
    for path in configs:
        if path.name.startswith("bench_"):  # `synthloom bench` configs: their own schema
            from synthloom.bench.config import load_bench_config

            assert load_bench_config(path).enabled()
            continue
        if path.name.startswith("scaling_"):  # `synthloom scaling` configs: their own schema
            from synthloom.scaling.config import load_scaling_config

            assert load_scaling_config(path).curves
            continue
        assert load_config(path).generate.num_rows > 0


def test_defaults_and_run_name(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.run.name == "cfg"
    assert cfg.filter.drop_duplicates is True
    assert cfg.evaluate.metrics == ["quality", "mle", "privacy", "detection"]
    assert cfg.run.device == "auto"


def test_unknown_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("target: y", "targte: y"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text
    assert "data.targte" in text
    assert "Did you mean `target`" in text


def test_wrong_type_names_key_and_expectation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL.replace("num_rows: 10", "num_rows: many")))
    assert "generate.num_rows" in str(err.value)
    assert "integer" in str(err.value)


def test_missing_required_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="`generate` is missing"):
        load_config(write(tmp_path, MINIMAL.split("generate:")[0]))


def test_set_overrides_are_typed(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    cfg = load_config(path, ["generate.num_rows=25", "run.device=cpu", "evaluate.mle_seeds=[4, 5]"])
    assert cfg.generate.num_rows == 25
    assert cfg.run.device == "cpu"
    assert cfg.evaluate.mle_seeds == [4, 5]
    with pytest.raises(ConfigError, match="run.device"):
        load_config(path, ["run.device=gpu"])
    with pytest.raises(ConfigError, match="--set"):
        load_config(path, ["generate.num_rows"])
    with pytest.raises(ConfigError, match="unknown key `generate.rows`"):
        load_config(path, ["generate.rows=3"])


def test_set_values_are_read_by_the_safe_yaml_reader(tmp_path: Path) -> None:
    """A --set value goes through the config files' reader: a repeated key or an alias bomb
    is refused, text that is not YAML at all stays text (and fails as a wrong type)."""
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match="--set data.labels: the key `a` is written twice"):
        load_config(path, ["data.labels={a: 1, a: 2}"])
    bomb = "&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"
    for level in range(1, 6):  # each level holds the previous one ten times: 1.1 million values
        bomb = f"&a{level} [{bomb}" + f", *a{level - 1}" * 9 + "]"
    with pytest.raises(ConfigError, match="anchors and aliases expand to"):
        load_config(path, [f"evaluate.mle_seeds={bomb}"])
    with pytest.raises(ConfigError, match=r"key `evaluate.mle_seeds`.*got '\[4'"):
        load_config(path, ["evaluate.mle_seeds=[4"])


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(write(tmp_path, "data: [unclosed"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_fractions_must_leave_training_rows(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "target: y", "target: y\n  validation_fraction: 0.5\n  test_fraction: 0.45"
    )
    with pytest.raises(ConfigError, match="at least 10%"):
        load_config(write(tmp_path, text))


def test_hash_ignores_tracking_and_paths_only(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    base = config_hash(load_config(path))
    assert config_hash(load_config(path, ["tracking.experiment=other", "run.data_dir=/x"])) == base
    assert config_hash(load_config(path, ["run.fail_at_stage=filter"])) == base
    assert config_hash(load_config(path, ["run.seed=1"])) != base
    assert config_hash(load_config(path, ["filter.drop_duplicates=false"])) != base


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1], "e": {}}


def test_method_is_chosen_by_name_with_its_own_keys(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    cfg = load_config(path, ["method.name=difflm", "method.latent_dim=32"])
    assert cfg.method.name == "difflm" and cfg.method.latent_dim == 32
    assert cfg.method.beta_start == 0.1 and cfg.method.temperature == 1.0
    with pytest.raises(ConfigError, match="Did you mean `difflm`"):
        load_config(path, ["method.name=diflm"])
    with pytest.raises(
        ConfigError, match="unknown key `method.latnt_dim`. Did you mean `latent_dim`"
    ):
        load_config(path, ["method.name=difflm", "method.latnt_dim=3"])
    with pytest.raises(ConfigError, match="unknown key `method.latent_dim`"):
        load_config(path, ["method.latent_dim=3"])  # marginals has no latent_dim


def _hash_with(raw: dict, **method: object) -> str:
    """config_hash of `raw` with `method` keys set on top of its own."""
    return config_hash(
        PipelineConfig.model_validate({**raw, "method": {**raw["method"], **method}})
    )


# config_hash of this FewGen config at commit 5c1e518, before `method.decoder_dtype` existed
FEWGEN = {
    "data": {"source": "posts.csv", "text_column": "text", "target": "label"},
    "method": {"name": "fewgen", "seed_openers": 2, "max_new_tokens": "auto"},
    "generate": {"num_rows": 100},
}
PRE_DECODER_DTYPE_HASH = "53c7d44150aa19051de549d3171dd5f7bdea4420b9cc4a9b70639b5de5d3aa83"


def test_text_decoder_dtype_float32_keeps_the_run_ids_of_earlier_runs() -> None:
    assert _hash_with(FEWGEN, decoder_dtype="float32") == PRE_DECODER_DTYPE_HASH
    assert _hash_with(FEWGEN) != PRE_DECODER_DTYPE_HASH  # auto: bfloat16 where faster, a new run
    bf16 = _hash_with(FEWGEN, decoder_dtype="bfloat16")
    assert bf16 not in (PRE_DECODER_DTYPE_HASH, _hash_with(FEWGEN))


# config_hash of this TabSyn config at commit 406e224, before `method.decoder_calibration`
TABSYN = {
    "data": {"source": "table.csv", "target": "y"},
    "method": {"name": "tabsyn"},
    "generate": {"num_rows": 100},
}
PRE_DECODER_CALIBRATION_HASH = "4e8c8091396d20e9e855eefe0a5ddb8d488fbddff44e9a85ebb55690809feb4c"


def test_tabsyn_calibration_on_training_latents_keeps_the_run_ids_of_earlier_runs() -> None:
    # derive_linear (2026-12-07, on by default) is a new run too; false is the earlier codec
    earlier = {"decoder_calibration": "training", "derive_linear": False}
    assert _hash_with(TABSYN, **earlier) == PRE_DECODER_CALIBRATION_HASH
    assert _hash_with(TABSYN, derive_linear=False) != PRE_DECODER_CALIBRATION_HASH  # generated
    assert _hash_with(TABSYN, decoder_calibration="training") != PRE_DECODER_CALIBRATION_HASH
    assert _hash_with(TABSYN) not in (
        PRE_DECODER_CALIBRATION_HASH,
        _hash_with(TABSYN, derive_linear=False),
    )
