"""The one table of config keys: it drives loading, validation, `mltrack config check`, the example and the docs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mltrack.judges._config import DEFAULTS as _JUDGES_DEFAULTS, JudgesKind

from .kinds import Bool, Int, Kind, Number, Pricing, Providers, Str, Tags

CONFIG_ENV = "MLTRACK_CONFIG"
"""Env var holding the path of the config file (a missing file there is an error)."""

ENABLED_ENVS = ("MLTRACK_ENABLED", "MLFLOW_ENABLED")
"""The master switch: either set to false turns all tracking off."""

FILE_NAMES = (".mltrack.yml", ".mltrack.yaml")
"""File names searched from the working directory upwards, in this order within one directory."""


@dataclass(frozen=True)
class Key:
    """One config key: its name, kind, default, env var, one-line doc and an example value for the docs."""

    name: str
    kind: Kind
    default: Any
    env: str | None
    doc: str
    example: Any = None
    extension: bool = False  # not in the contract (§4); documented as an mltrack extension


KEYS: tuple[Key, ...] = (
    Key("tracking_uri", Str(), None, "MLFLOW_TRACKING_URI",
        "MLflow tracking URI; unset: MLflow's own default (a local SQLite file).",
        example="http://localhost:5000"),
    Key("experiment_name", Str(), None, "MLTRACK_EXPERIMENT",
        "MLflow experiment runs are logged to; unset: the active (or default) experiment.",
        example="my-llm-app"),
    Key("llm_tracking_enabled", Bool(), True, "MLTRACK_LLM_TRACKING_ENABLED",
        "Log llm.* metrics, artifacts and spans; false keeps runs and execution_time_seconds only."),
    Key("llm_log_prompts", Bool(), True, "MLTRACK_LLM_LOG_PROMPTS",
        "Store prompt text as run artifacts under llm/; false: prompt text appears nowhere in MLflow."),
    Key("llm_log_responses", Bool(), True, "MLTRACK_LLM_LOG_RESPONSES",
        "Store response text as run artifacts under llm/; false: response text appears nowhere in MLflow."),
    Key("llm_track_token_usage", Bool(), True, "MLTRACK_LLM_TRACK_TOKEN_USAGE",
        "Log llm.tokens.* metrics."),
    Key("llm_track_costs", Bool(), True, "MLTRACK_LLM_TRACK_COSTS",
        "Log llm.cost.* metrics."),
    Key("llm_token_limit_warning", Int(minimum=0, nullable=True), None, "MLTRACK_LLM_TOKEN_LIMIT_WARNING",
        "Emit a BudgetWarning once per run when its cumulative tokens pass this; null: no limit.",
        example=100000),
    Key("llm_cost_limit_warning", Number(nullable=True), None, "MLTRACK_LLM_COST_LIMIT_WARNING",
        "Emit a BudgetWarning once per run when its cumulative cost (USD) passes this; null: no limit.",
        example=5.0),
    Key("llm_cost_limit_error", Number(nullable=True), None, "MLTRACK_LLM_COST_LIMIT_ERROR",
        "Raise BudgetExceededError before a run's next call once its cost (USD) reached this; null: no limit.",
        example=10.0),
    Key("llm_providers", Providers(), {}, None,
        "Per provider, the model assumed when neither the call nor the tracker names one; for azure, "
        "`deployments` names the model each deployment serves, so its calls are priced.",
        example={"openai": {"default_model": "gpt-4o-mini"},
                 "anthropic": {"default_model": "claude-3-5-haiku-latest"},
                 "azure": {"deployments": {"my-deployment": "gpt-4o"}}}),
    Key("pricing", Pricing(), {}, None,
        "Add or override model prices, USD per 1M tokens (numbers, or strings for exact decimals).",
        example={"my-finetune": {"input": 1.0, "output": 2.0, "cached_input": 0.1, "cache_write": 1.25}}),
    Key("pricing_dir", Str(path=True), None, "MLTRACK_PRICING_DIR",
        "Folder of the prices `mltrack pricing update` writes and tracking reads (~ is expanded); null: "
        "mltrack/pricing in the user config dir. Without price files there, the shipped prices are used.",
        example="~/.config/mltrack/pricing", extension=True),
    Key("auto_instrument", Bool(), False, "MLTRACK_AUTO_INSTRUMENT",
        "Instrument every installed LLM client library automatically, as instrument() with no argument."),
    Key("tags", Tags(), {}, None,
        "Tags set on every run mltrack opens (numbers and bools become strings).",
        example={"team": "search", "env": "dev"}),
    Key("stream_include_usage", Bool(), True, "MLTRACK_STREAM_INCLUDE_USAGE",
        "Ask OpenAI to report token usage at the end of streamed responses.", extension=True),
    Key("llm_log_traces", Bool(), True, "MLTRACK_LLM_LOG_TRACES",
        "Also write each LLM call as an MLflow trace span (type LLM, with tokens and cost).", extension=True),
    Key("standalone_runs", Bool(), True, "MLTRACK_STANDALONE_RUNS",
        "A call made outside any run gets a short run of its own.", extension=True),
    Key("writer_queue_size", Int(minimum=0), 10000, "MLTRACK_WRITER_QUEUE_SIZE",
        "Most records waiting in memory to be put in the on-disk journal (at least 1,000); past it, records are "
        "dropped with a warning (only a disk that does not keep up gets there).", extension=True),
    Key("writer_flush_interval", Number(minimum=0, exclusive=True), 0.1, "MLTRACK_WRITER_FLUSH_INTERVAL",
        "Seconds a record may wait in memory (gathering more into one write) before it goes to the journal "
        "(at most 1).", extension=True),
    Key("writer_process", Bool(), True, "MLTRACK_WRITER_PROCESS",
        "Write to MLflow from one helper process shared by all your processes on this host, so that MLflow is "
        "never imported by your application; false: from a thread of this process.", extension=True),
    Key("journal_dir", Str(path=True), None, "MLTRACK_JOURNAL_DIR",
        "Folder for records the store could not take (~ is expanded); null: a folder in the user cache dir.",
        example="~/.cache/mltrack/journal", extension=True),
    Key("journal_retention_days", Number(minimum=0, exclusive=True), 7, "MLTRACK_JOURNAL_RETENTION_DAYS",
        "Records another process left in the journal for a store that never answered are dropped, with one "
        "warning, after this many days.", extension=True),
    Key("prometheus_enabled", Bool(), False, "MLTRACK_PROMETHEUS_ENABLED",
        "Export live Prometheus metrics of LLM calls from the first tracked call (needs mltrack[prometheus])."),
    Key("prometheus_port", Int(minimum=0, maximum=65535, nullable=True), None, "MLTRACK_PROMETHEUS_PORT",
        "Serve /metrics on this port when prometheus_enabled; null: only register the metrics.", example=9464),
    Key("prometheus_addr", Str(nullable=False), "127.0.0.1", "MLTRACK_PROMETHEUS_ADDR",
        "Address the /metrics server binds (0.0.0.0: every interface)."),
    Key("prometheus_max_models", Int(minimum=0), 200, "MLTRACK_PROMETHEUS_MAX_MODELS",
        "Distinct model label values in Prometheus metrics; later models are labelled other."),
    Key("judges", JudgesKind(), _JUDGES_DEFAULTS, None,
        "LLM-as-a-judge scores of finished @track / context runs, in the background (see docs/judges.md).",
        example={"enabled": True, "model": "gpt-4o-mini", "provider": "openai", "base_url": None,
                 "metrics": ["answer_relevancy", "faithfulness"], "sample_rate": 0.2, "max_cost_usd": 5.0,
                 "max_concurrency": 4, "custom": {"politeness": "Rate how polite {answer} is ..."}}),
)

KEYS_BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}
KEY_NAMES: tuple[str, ...] = tuple(KEYS_BY_NAME)
