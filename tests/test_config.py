"""Tests of mltrack.config: discovery, precedence, validation, errors, check(), the example and the docs."""

from __future__ import annotations

import dataclasses
import threading
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from mltrack import _safety
from mltrack import config
from mltrack.config import ConfigError, KEYS
from mltrack.config.example import DOCS_FILE, EXAMPLE_FILE, generated_reference
from mltrack.config.keys import CONFIG_ENV, ENABLED_ENVS, KEY_NAMES
from mltrack.config.kinds import PRICE_FIELDS

ROOT = Path(__file__).resolve().parent.parent
ENV_VARS = [k.env for k in KEYS if k.env] + [CONFIG_ENV, *ENABLED_ENVS]


@pytest.fixture(autouse=True)
def clean(tmp_path, monkeypatch):
    """A clean environment, an empty working directory below tmp_path, no cached settings or warnings."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    work = tmp_path / "project" / "src"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    config.reset()
    _safety.reset_warnings_for_tests()
    yield work
    config.reset()
    _safety.reset_warnings_for_tests()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and the table -------------------------------------------------------------------------


def test_defaults_come_from_the_table():
    s = config.get_settings()
    for key in KEYS:
        assert getattr(s, key.name) == key.default, key.name
    assert s.enabled is True
    assert s.source is None
    assert s.writer_queue_size == 10000 and s.writer_flush_interval == 0.1 and s.journal_retention_days == 7
    assert s.auto_instrument is False and s.stream_include_usage is True and s.standalone_runs is True


def test_settings_fields_mirror_the_table():
    fields = [f.name for f in dataclasses.fields(config.Settings)]
    assert fields == [*KEY_NAMES, "enabled", "source"]


def test_scalar_keys_have_env_vars():
    contract = {"tracking_uri": "MLFLOW_TRACKING_URI", "experiment_name": "MLTRACK_EXPERIMENT"}
    for key in KEYS:
        if key.kind.merge:
            assert key.env is None
        else:
            assert key.env == contract.get(key.name, f"MLTRACK_{key.name.upper()}")


def test_get_config_is_plain_data():
    config.configure(tags={"a": "b"}, pricing={"m": {"input": 1, "output": 2}})
    c = config.get_config()
    assert set(c) == {*KEY_NAMES, "enabled"}
    assert type(c["tags"]) is dict and type(c["pricing"]["m"]) is dict
    assert c["tags"] == {"a": "b"} and c["enabled"] is True


def test_settings_are_frozen_and_read_only():
    s = config.configure(tags={"a": "b"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.tracking_uri = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.tags["c"] = "d"  # type: ignore[index]


def test_get_settings_is_cached_until_reload(clean):
    write(clean / ".mltrack.yml", "experiment_name: one\n")
    first = config.get_settings()
    assert config.get_settings() is first
    write(clean / ".mltrack.yml", "experiment_name: two\n")
    assert config.get_settings().experiment_name == "one"
    assert config.reload().experiment_name == "two"


# --- discovery -------------------------------------------------------------------------------------


def test_file_in_cwd(clean):
    path = write(clean / ".mltrack.yml", "tracking_uri: http://here:5000\nllm_log_prompts: false\n")
    s = config.get_settings()
    assert s.tracking_uri == "http://here:5000" and s.llm_log_prompts is False
    assert s.source == str(path)


def test_file_in_a_parent_dir(clean):
    path = write(clean.parent.parent / ".mltrack.yml", "experiment_name: from-parent\n")
    s = config.get_settings()
    assert s.experiment_name == "from-parent" and s.source == str(path)


def test_nearest_file_wins(clean):
    write(clean.parent / ".mltrack.yml", "experiment_name: far\n")
    write(clean / ".mltrack.yml", "experiment_name: near\n")
    assert config.get_settings().experiment_name == "near"


def test_yaml_extension_is_accepted(clean):
    write(clean / ".mltrack.yaml", "experiment_name: yaml\n")
    assert config.get_settings().experiment_name == "yaml"


def test_yml_wins_over_yaml_with_a_warning(clean):
    write(clean / ".mltrack.yml", "experiment_name: yml\n")
    write(clean / ".mltrack.yaml", "experiment_name: yaml\n")
    with pytest.warns(UserWarning, match=r"\.mltrack\.yaml: ignored"):
        assert config.get_settings().experiment_name == "yml"


def test_mltrack_config_env(clean, tmp_path, monkeypatch):
    write(clean / ".mltrack.yml", "experiment_name: discovered\n")
    path = write(tmp_path / "elsewhere.yml", "experiment_name: explicit\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    s = config.get_settings()
    assert s.experiment_name == "explicit" and s.source == str(path)


def test_mltrack_config_relative_path(clean, monkeypatch):
    write(clean / "conf.yml", "experiment_name: relative\n")
    monkeypatch.setenv(CONFIG_ENV, "conf.yml")
    assert config.get_settings().experiment_name == "relative"


def test_missing_mltrack_config_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "nope.yml"))
    with pytest.raises(ConfigError, match=r"MLTRACK_CONFIG.*nope\.yml"):
        config.get_settings()


def test_empty_file_means_defaults(clean):
    write(clean / ".mltrack.yml", "# nothing here\n")
    assert config.get_settings().llm_log_prompts is True


# --- precedence ------------------------------------------------------------------------------------


def test_env_wins_over_file(clean, monkeypatch):
    write(clean / ".mltrack.yml", "tracking_uri: file-uri\nexperiment_name: file-exp\nllm_log_prompts: true\n"
                                  "writer_queue_size: 5\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "env-uri")
    monkeypatch.setenv("MLTRACK_EXPERIMENT", "env-exp")
    monkeypatch.setenv("MLTRACK_LLM_LOG_PROMPTS", "OFF")
    s = config.get_settings()
    assert (s.tracking_uri, s.experiment_name, s.llm_log_prompts) == ("env-uri", "env-exp", False)
    assert s.writer_queue_size == 5


def test_configure_wins_over_env(monkeypatch):
    monkeypatch.setenv("MLTRACK_LLM_COST_LIMIT_ERROR", "5")
    assert config.get_settings().llm_cost_limit_error == 5.0
    s = config.configure(llm_cost_limit_error=7)
    assert s.llm_cost_limit_error == 7.0
    assert config.get_settings() is s
    assert config.configure(llm_cost_limit_error=None).llm_cost_limit_error is None


def test_configure_overrides_survive_reload_but_not_reset(monkeypatch):
    config.configure(experiment_name="runtime")
    monkeypatch.setenv("MLTRACK_EXPERIMENT", "env")
    assert config.reload().experiment_name == "runtime"
    config.reset()
    assert config.get_settings().experiment_name == "env"


def test_mapping_keys_merge_by_entry(clean):
    write(clean / ".mltrack.yml", "pricing:\n  a: {input: 1, output: 2}\n  b: {input: 3, output: 4}\n"
                                  "tags: {team: x}\n")
    config.configure(pricing={"b": {"input": 5, "output": 6}}, tags={"job": "y"})
    s = config.configure(tags={"team": "z"})
    assert dict(s.pricing["a"]) == {"input": 1, "output": 2}
    assert dict(s.pricing["b"]) == {"input": 5, "output": 6}
    assert dict(s.tags) == {"team": "z", "job": "y"}


def test_configure_is_all_or_nothing():
    with pytest.raises(ConfigError):
        config.configure(experiment_name="fine", writer_queue_size=0)
    assert config.get_settings().experiment_name is None


def test_configure_is_thread_safe():
    def worker(i: int) -> None:
        for j in range(20):
            config.configure(tags={f"t{i}-{j}": "x"})
            config.get_settings()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(config.get_settings().tags) == 160


# --- values ----------------------------------------------------------------------------------------


def test_values_are_normalized(clean, monkeypatch):
    monkeypatch.setenv("HOME", str(clean))
    write(clean / ".mltrack.yml", "tags: {n: 3, f: 1.5, b: true, s: text, 7: seven}\n"
                                  "pricing:\n  m: {input: 1, output: '0.075', cached_input: 0.1, cache_write: null}\n"
                                  "llm_token_limit_warning: 1000.0\nllm_cost_limit_warning: 2\n"
                                  "journal_dir: ~/journal\nexperiment_name: ''\n"
                                  "llm_providers: {openai: {default_model: gpt-4o-mini}}\n")
    s = config.get_settings()
    assert dict(s.tags) == {"n": "3", "f": "1.5", "b": "true", "s": "text", "7": "seven"}
    assert dict(s.pricing["m"]) == {"input": 1, "output": "0.075", "cached_input": 0.1}
    assert s.llm_token_limit_warning == 1000 and type(s.llm_token_limit_warning) is int
    assert s.llm_cost_limit_warning == 2.0 and type(s.llm_cost_limit_warning) is float
    assert s.journal_dir == str(clean / "journal")
    assert s.experiment_name is None
    assert s.default_model("openai") == "gpt-4o-mini" and s.default_model("anthropic") is None


@pytest.mark.parametrize("word,expected", [("true", True), ("1", True), ("YES", True), ("On", True),
                                           ("false", False), ("0", False), ("no", False), ("OFF", False)])
def test_env_bool_words(monkeypatch, word, expected):
    monkeypatch.setenv("MLTRACK_AUTO_INSTRUMENT", word)
    assert config.get_settings().auto_instrument is expected


def test_env_numbers_and_nulls(clean, monkeypatch):
    write(clean / ".mltrack.yml", "llm_cost_limit_error: 3\nllm_token_limit_warning: 10\n")
    monkeypatch.setenv("MLTRACK_LLM_COST_LIMIT_ERROR", "none")
    monkeypatch.setenv("MLTRACK_LLM_TOKEN_LIMIT_WARNING", "NULL")
    monkeypatch.setenv("MLTRACK_WRITER_FLUSH_INTERVAL", " 0.25 ")
    monkeypatch.setenv("MLTRACK_WRITER_QUEUE_SIZE", "42")
    s = config.get_settings()
    assert s.llm_cost_limit_error is None and s.llm_token_limit_warning is None
    assert s.writer_flush_interval == 0.25 and s.writer_queue_size == 42


def test_empty_env_var_counts_as_unset(clean, monkeypatch):
    write(clean / ".mltrack.yml", "tracking_uri: file-uri\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.setenv("MLTRACK_LLM_LOG_PROMPTS", " ")
    s = config.get_settings()
    assert s.tracking_uri == "file-uri" and s.llm_log_prompts is True


# --- the master switch -----------------------------------------------------------------------------


@pytest.mark.parametrize("var", ENABLED_ENVS)
@pytest.mark.parametrize("word", ["false", "0", "no", "OFF"])
def test_master_switch_off(monkeypatch, var, word):
    monkeypatch.setenv(var, word)
    assert config.get_settings().enabled is False
    assert config.get_config()["enabled"] is False


def test_master_switch_either_false_wins(monkeypatch):
    monkeypatch.setenv("MLTRACK_ENABLED", "true")
    monkeypatch.setenv("MLFLOW_ENABLED", "false")
    assert config.get_settings().enabled is False
    assert config.check().enabled_source == "env MLFLOW_ENABLED"


def test_master_switch_bad_value(monkeypatch):
    monkeypatch.setenv("MLTRACK_ENABLED", "nah")
    with pytest.raises(ConfigError, match="MLTRACK_ENABLED"):
        config.get_settings()


def test_enabled_is_not_a_file_or_configure_key(clean):
    write(clean / ".mltrack.yml", "enabled: false\n")
    with pytest.warns(UserWarning, match="MLTRACK_ENABLED=false"):
        assert config.get_settings().enabled is True
    with pytest.raises(ConfigError, match="MLTRACK_ENABLED"):
        config.configure(enabled=False)


# --- errors ----------------------------------------------------------------------------------------


def test_bad_yaml_names_the_file(clean):
    path = write(clean / ".mltrack.yml", "tracking_uri: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        config.get_settings()
    assert str(path) in str(info.value) and "line" in str(info.value)


def test_bad_yaml_value_error_is_a_config_error(clean):
    write(clean / ".mltrack.yml", "tags: {when: 2024-13-45}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.get_settings()


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_non_mapping_document(clean, text):
    write(clean / ".mltrack.yml", text)
    with pytest.raises(ConfigError, match=r"\.mltrack\.yml: expects a mapping of keys at the top level"):
        config.get_settings()


def test_error_message_format(clean):
    write(clean / ".mltrack.yml", "llm_cost_limit_error: ten\n")
    with pytest.raises(ConfigError) as info:
        config.get_settings()
    assert str(info.value).endswith(
        ".mltrack.yml: key 'llm_cost_limit_error' expects a number >= 0, got 'ten' (str)")


WRONG = [
    ("tracking_uri", 5, "expects a string, got 5 (int)"),
    ("experiment_name", ["a"], "expects a string"),
    ("journal_dir", {"a": 1}, "expects a path"),
    ("llm_log_prompts", "false", "expects true or false, got 'false' (str)"),
    ("auto_instrument", 1, "expects true or false, got 1 (int)"),
    ("llm_token_limit_warning", 0, "expects an integer > 0, got 0 (int)"),
    ("llm_token_limit_warning", -5, "expects an integer > 0"),
    ("llm_token_limit_warning", 1.5, "expects an integer > 0, got 1.5 (float)"),
    ("llm_token_limit_warning", True, "expects an integer > 0, got True (bool)"),
    ("writer_queue_size", None, "expects an integer > 0, got None"),
    ("llm_cost_limit_warning", -0.01, "expects a number >= 0, got -0.01 (float)"),
    ("llm_cost_limit_error", -1, "expects a number >= 0, got -1 (int)"),
    ("llm_cost_limit_error", float("nan"), "expects a number >= 0, got nan"),
    ("llm_cost_limit_error", float("inf"), "expects a number >= 0, got inf"),
    ("llm_cost_limit_error", 10**400, "expects a number >= 0, got 1000"),
    ("writer_flush_interval", 0, "expects a number > 0, got 0 (int)"),
    ("llm_providers", ["openai"], "key 'llm_providers' expects a mapping"),
    ("llm_providers", {"openai": "gpt-4o"}, "key 'llm_providers.openai' expects a mapping"),
    ("llm_providers", {"openai": {"default_model": 4}}, "key 'llm_providers.openai.default_model' expects"),
    ("llm_providers", {"openai": {}}, "key 'llm_providers.openai.default_model' is missing"),
    ("pricing", "cheap", "key 'pricing' expects a mapping"),
    ("pricing", {"m": 1.0}, "key 'pricing.m' expects a mapping"),
    ("pricing", {"m": {"input": -1, "output": 1}}, "key 'pricing.m.input' expects a number >= 0, got -1 (int)"),
    ("pricing", {"m": {"input": "abc", "output": 1}}, "key 'pricing.m.input' expects a number >= 0, got 'abc'"),
    ("pricing", {"m": {"input": 1, "output": True}}, "key 'pricing.m.output' expects a number >= 0"),
    ("pricing", {"m": {"input": 1}}, "key 'pricing.m.output' is missing"),
    ("pricing", {"m": {"input": 1, "output": 1, "cached_input": -2}}, "key 'pricing.m.cached_input' expects"),
    ("tags", ["a"], "key 'tags' expects a mapping"),
    ("tags", {"a": None}, "key 'tags.a' expects a string, number or bool, got None"),
    ("tags", {"a": [1]}, "key 'tags.a' expects a string, number or bool"),
]


@pytest.mark.parametrize("key,value,message", WRONG, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(WRONG)])
def test_wrong_values_in_file(clean, key, value, message):
    path = write(clean / ".mltrack.yml", yaml.safe_dump({key: value}))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace(".", r"\.").replace("?", r"\?")) as info:
        config.get_settings()
    assert str(info.value).startswith(str(path) + ": key ")


@pytest.mark.parametrize("key,value,message", WRONG, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(WRONG)])
def test_wrong_values_in_configure(key, value, message):
    with pytest.raises(ConfigError) as info:
        config.configure(**{key: value})
    assert str(info.value).startswith("configure(): key ") and message in str(info.value)


def test_all_problems_of_a_file_are_reported(clean):
    write(clean / ".mltrack.yml", "llm_log_prompts: maybe\nwriter_queue_size: -1\n")
    with pytest.raises(ConfigError) as info:
        config.get_settings()
    assert "llm_log_prompts" in str(info.value) and "writer_queue_size" in str(info.value)


def test_failed_load_is_cached_until_reload(clean):
    path = write(clean / ".mltrack.yml", "writer_queue_size: -1\n")
    for _ in range(2):
        with pytest.raises(ConfigError):
            config.get_settings()
    write(path, "writer_queue_size: 3\n")
    with pytest.raises(ConfigError):
        config.get_settings()
    assert config.reload().writer_queue_size == 3


@pytest.mark.parametrize("var,text,expected", [
    ("MLTRACK_LLM_LOG_PROMPTS", "maybe", "one of true/false/1/0/yes/no/on/off, got 'maybe' (str)"),
    ("MLTRACK_WRITER_QUEUE_SIZE", "lots", "an integer > 0, got 'lots' (str)"),
    ("MLTRACK_WRITER_QUEUE_SIZE", "0", "an integer > 0, got 0 (int)"),
    ("MLTRACK_WRITER_QUEUE_SIZE", "none", "an integer > 0, got 'none' (str)"),
    ("MLTRACK_LLM_COST_LIMIT_ERROR", "-3", "a number >= 0, got -3.0 (float)"),
    ("MLTRACK_LLM_COST_LIMIT_WARNING", "ten", "a number >= 0, got 'ten' (str)"),
])
def test_bad_env_value_names_the_variable(monkeypatch, var, text, expected):
    monkeypatch.setenv(var, text)
    with pytest.raises(ConfigError) as info:
        config.get_settings()
    assert str(info.value).startswith(f"environment variable {var}: key '")
    assert str(info.value).endswith(expected)


# --- unknown keys ----------------------------------------------------------------------------------


def test_unknown_key_warns_with_closest(clean):
    write(clean / ".mltrack.yml", "llm_log_prompt: false\n")
    with pytest.warns(UserWarning, match=r"unknown key 'llm_log_prompt'; did you mean 'llm_log_prompts'\?"):
        s = config.get_settings()
    assert s.llm_log_prompts is True


def test_unknown_nested_key_warns_with_closest(clean):
    write(clean / ".mltrack.yml", "pricing:\n  m: {input: 1, output: 2, cached: 0.5}\n"
                                  "llm_providers:\n  openai: {default_model: x, defualt: y}\n")
    with pytest.warns(UserWarning) as record:
        s = config.get_settings()
    messages = [str(w.message) for w in record]
    assert any("unknown key 'pricing.m.cached'; did you mean 'pricing.m.cached_input'?" in m for m in messages)
    assert any("'llm_providers.openai.defualt'; did you mean 'llm_providers.openai.default_model'?" in m
               for m in messages)
    assert dict(s.pricing["m"]) == {"input": 1, "output": 2}


def test_unknown_key_with_a_dot_in_its_name(clean):
    write(clean / ".mltrack.yml", "pricing:\n  gpt-4.1: {input: 1, output: 2, in.put: 3}\n")
    with pytest.warns(UserWarning, match=r"unknown key 'pricing\.gpt-4\.1\.in\.put'; did you mean "
                                         r"'pricing\.gpt-4\.1\.input'\?"):
        config.get_settings()


def test_unknown_key_warns_once(clean):
    write(clean / ".mltrack.yml", "trackin_uri: x\n")
    with pytest.warns(UserWarning):
        config.get_settings()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config.reload()


def test_configure_unknown_key_raises_with_closest():
    with pytest.raises(ConfigError, match=r"configure\(\): unknown key 'llm_track_cost'; did you mean "
                                          r"'llm_track_costs'\?"):
        config.configure(llm_track_cost=False)
    with pytest.raises(ConfigError, match="did you mean 'pricing.m.cache_write'"):
        config.configure(pricing={"m": {"input": 1, "output": 1, "cache_writes": 1}})


# --- check() ---------------------------------------------------------------------------------------


def test_check_reports_sources(clean, monkeypatch):
    path = write(clean / ".mltrack.yml", "experiment_name: f\nllm_log_prompts: false\ntags: {a: b}\n")
    monkeypatch.setenv("MLTRACK_LLM_LOG_PROMPTS", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "env-uri")
    config.configure(writer_queue_size=7, tags={"c": "d"})
    result = config.check()
    assert result.path == str(path) and result.found_by == "search" and result.ok and result.exit_code == 0
    sources = {e.key: e.source for e in result.entries}
    assert sources["experiment_name"] == "file"
    assert sources["llm_log_prompts"] == "env"
    assert sources["tracking_uri"] == "env"
    assert sources["writer_queue_size"] == "configure"
    assert sources["tags"] == "file+configure"
    assert sources["pricing"] == "default"
    assert result.entry("tags").value == {"a": "b", "c": "d"}
    assert result.entry("llm_log_prompts").value is True and result.entry("llm_log_prompts").env == \
        "MLTRACK_LLM_LOG_PROMPTS"
    text = config.format_check(result)
    assert str(path) in text and "writer_queue_size" in text and text.rstrip().endswith("OK")


def test_check_collects_problems_without_raising_or_warning(clean, monkeypatch):
    write(clean / ".mltrack.yml", "llm_cost_limit_error: ten\nexperimnt_name: x\n")
    monkeypatch.setenv("MLTRACK_STANDALONE_RUNS", "perhaps")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = config.check()
    assert not result.ok and result.exit_code == 1
    assert len(result.errors) == 2 and len(result.warnings) == 1
    assert "did you mean 'experiment_name'" in result.warnings[0]
    assert result.entry("llm_cost_limit_error").source == "default"
    text = config.format_check(result)
    assert "error: " in text and "warning: " in text and "2 errors, 1 warning" in text


def test_check_explicit_path(tmp_path):
    path = write(tmp_path / "x.yml", "auto_instrument: true\n")
    result = config.check(str(path))
    assert result.found_by == "argument" and result.entry("auto_instrument").source == "file"
    missing = config.check(str(tmp_path / "missing.yml"))
    assert missing.exit_code == 1 and "missing.yml" in missing.errors[0]


def test_check_without_file():
    result = config.check()
    assert result.path is None and result.ok and {e.source for e in result.entries} == {"default"}
    assert "no config file found" in config.format_check(result)


# --- the example and the docs ----------------------------------------------------------------------


def test_committed_example_matches_the_table():
    assert (ROOT / EXAMPLE_FILE).read_text(encoding="utf-8") == config.render_example(), \
        "run `python -m mltrack.config` to regenerate"


def test_example_loads_cleanly_with_defaults(monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(ROOT / EXAMPLE_FILE))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = config.get_settings()
        assert config.check().problems == ()
    assert s.source == str(ROOT / EXAMPLE_FILE)
    for key in KEYS:
        assert getattr(s, key.name) == key.default


def test_example_values_are_valid():
    examples = {k.name: k.example for k in KEYS if k.example is not None}
    s = config.configure(**examples)
    assert s.tracking_uri == "http://localhost:5000" and s.pricing["my-finetune"]["cache_write"] == 1.25


def test_docs_list_every_key():
    docs = (ROOT / DOCS_FILE).read_text(encoding="utf-8")
    for key in KEYS:
        assert f"`{key.name}`" in docs, key.name
        if key.env:
            assert key.env in docs, key.env
    assert generated_reference(docs) == config.render_reference(), "run `python -m mltrack.config` to regenerate"


def test_documented_error_examples_are_real(clean):
    docs = (ROOT / DOCS_FILE).read_text(encoding="utf-8")
    path = write(clean / ".mltrack.yml", "llm_cost_limit_error: ten\nllm_token_limit_warning: 0\n"
                                         "pricing: {my-model: {input: -1}}\nllm_log_prompts: no way\n")
    with pytest.raises(ConfigError) as info:
        config.get_settings()
    lines = str(info.value).splitlines()
    for text in ("tracking_uri: x\nexperiment_name: y\nnot a key\n", "- a\n- b\n"):
        write(path, text)
        with pytest.raises(ConfigError) as info:
            config.reload()
        lines.append(str(info.value))
    for line in lines:
        assert line.replace(str(path), "/home/me/app/.mltrack.yml") in docs, line


def test_documented_env_and_configure_errors_are_real(monkeypatch):
    docs = (ROOT / DOCS_FILE).read_text(encoding="utf-8")
    messages = []
    for var, text in (("MLTRACK_LLM_LOG_PROMPTS", "maybe"), (CONFIG_ENV, "/etc/mltrack.yml")):
        monkeypatch.setenv(var, text)
        with pytest.raises(ConfigError) as info:
            config.reload()
        messages.append(str(info.value))
        monkeypatch.delenv(var)
    with pytest.raises(ConfigError) as info:
        config.configure(writer_flush_interval=0)
    messages.append(str(info.value))
    for message in messages:
        assert message in docs, message


# --- property: any YAML either loads or is a ConfigError -------------------------------------------

_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**400)
            | st.floats() | st.text(max_size=12))
_names = st.sampled_from([*KEY_NAMES, *PRICE_FIELDS, "default_model", "openai", "enabled"]) | st.text(max_size=8)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_names | st.integers(), inner, max_size=4),
    max_leaves=16,
)
_documents = st.one_of(
    st.dictionaries(_names, _values, max_size=6).map(yaml.safe_dump),
    _values.map(yaml.safe_dump),
    st.text(max_size=80),
)


@hyp_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_documents)
def test_any_yaml_loads_or_raises_config_error(tmp_path, monkeypatch, text):
    path = tmp_path / "fuzz.yml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    config.reset()
    _safety.reset_warnings_for_tests()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            s = config.get_settings()
        except ConfigError:
            assert not config.check().ok
        else:
            assert isinstance(s, config.Settings)
            config.get_config()
            assert config.check().ok
