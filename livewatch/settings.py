"""Settings: a TOML config file, then `LIVEWATCH_…` environment variables, then CLI flags
(each overrides the one before).

The file has a `[daemon]` table, one `[classifier]` table and `[[sources]]` / `[[sinks]]` arrays;
each component table has a `type` (the plugin's name), an optional `name` (the instance's name in
logs and metrics) and the plugin's own options, validated by the plugin's pydantic model::

    [daemon]
    workers = 1

    [classifier]
    type = "i3d"
    model = "./models/ucf101"

    [[sources]]
    type = "folder"
    path = "./live"

    [[sinks]]
    type = "local"

Nested environment variables use `__`: `LIVEWATCH_DAEMON__WORKERS=2`,
`LIVEWATCH_CLASSIFIER__MODEL=...`, `LIVEWATCH_SINKS__0__TYPE=stdout` (an indexed list set in the
environment replaces the file's list as a whole).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import ConfigError
from .events import EventSettings

DEFAULT_CONFIG_FILE = "livewatch.toml"


class DaemonSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int = Field(
        1, ge=1, description="classifier workers: segments in classification at once (the i3d "
        "classifier decodes the next while its model thread runs one's forward pass; 2 lets it "
        "overlap them; more batch them: its max_batch)"
    )
    queue_size: int = Field(
        4, ge=1, description="segments waiting for a worker; a full queue stops the sources pulling"
    )
    segment_timeout: float = Field(
        300.0, gt=0, description="seconds one segment may take to classify before it fails"
    )
    sink_retries: int | None = Field(
        None, ge=0, description="retries of a sink write that failed transiently, with backoff "
        "and jitter; none (the default): until it succeeds or the daemon stops, holding the "
        "segment meanwhile, so a sink that is down stops the intake (no reclassifying, no "
        "redelivery counts towards a dead-letter queue); a number: then the segment goes back to "
        "its source unacknowledged"
    )
    sink_retry_max_seconds: float = Field(
        30.0, gt=0, description="longest wait between two attempts of a sink write"
    )
    classifier_retries: int | None = Field(
        5, ge=0, description="retries, with backoff and jitter, of a classification that failed "
        "transiently (the model or its runtime failing on valid input: out of memory, a crashed "
        "backend; a remote classifier that is down), holding the segment meanwhile; the daemon is "
        "not ready until one succeeds; then the segment goes back to its source unacknowledged; "
        "none: until it succeeds or the daemon stops"
    )
    classifier_retry_max_seconds: float = Field(
        30.0, gt=0, description="longest wait between two attempts of a classification"
    )
    shutdown_timeout: float = Field(
        30.0, ge=0, description="seconds in-flight segments get to finish on SIGINT/SIGTERM"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="how much the daemon logs (to standard error)"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text lines, or one JSON object per line (with `segment` set on every "
        "line about one)"
    )
    health_listen: str = Field(
        "127.0.0.1:9108", description="host:port serving /livez, /readyz and Prometheus /metrics; "
        "\"\" turns it off (if the default port is taken, the daemon runs without it)"
    )
    lag_policy: Literal["all", "live"] = Field(
        "all", description="when behind: `all` classifies every segment (lag grows); `live` skips "
        "a segment when a newer one of its stream is already waiting, recording the skip"
    )
    max_segment_mb: float = Field(
        64.0, gt=0, description="a bigger segment is an error detection, never read (a 10 s 1080p "
        "segment is a few MB)"
    )


class UiSettings(BaseModel):
    """The web page (`livewatch.ui`), served on the daemon's health listener under ``/ui/``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="serve the web UI and its JSON API on health_listen")
    token: str | None = Field(
        None, description="required by the UI on a non-loopback address (else the daemon refuses "
        "to start); also read from LIVEWATCH_UI_TOKEN"
    )


class ComponentConfig(BaseModel):
    """One source, classifier or sink: its plugin `type`, an instance `name`, and its options."""

    model_config = ConfigDict(extra="allow")

    type: str
    name: str | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _default_sources() -> list[ComponentConfig]:
    return [ComponentConfig(type="folder", path="live")]


def _default_sinks() -> list[ComponentConfig]:
    return [ComponentConfig(type="local"), ComponentConfig(type="stdout")]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LIVEWATCH_", env_nested_delimiter="__", extra="forbid"
    )

    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    classifier: ComponentConfig = Field(default_factory=lambda: ComponentConfig(type="i3d"))
    sources: list[ComponentConfig] = Field(default_factory=_default_sources)
    sinks: list[ComponentConfig] = Field(default_factory=_default_sinks)
    ui: UiSettings = Field(default_factory=UiSettings)
    events: EventSettings = Field(default_factory=EventSettings)

    @field_validator("sources", "sinks", mode="before")
    @classmethod
    def _indexed_env_to_list(cls, value: Any) -> Any:
        """`LIVEWATCH_SINKS__0__TYPE=x` arrives as {"0": {...}}: order it into a list."""
        if isinstance(value, dict) and all(str(k).isdigit() for k in value):
            return [value[k] for k in sorted(value, key=int)]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: CLI overrides (init kwargs) > environment > TOML file > defaults.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Read settings from `config` (or ./livewatch.toml if present), the environment and
    `overrides` (nested dicts, as the CLI builds them). Raises ConfigError naming each bad field."""
    path = Path(config) if config else Path(DEFAULT_CONFIG_FILE)
    if config and not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    toml_file = path if path.is_file() else None

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=toml_file)

    try:
        settings = _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, where=str(path) if toml_file else "")) from None
    except ValueError as exc:  # a TOML syntax error surfaces as tomllib.TOMLDecodeError
        raise ConfigError(f"{path}: {exc}") from None
    return Settings.model_construct(**dict(settings))


def describe_validation_error(exc: ValidationError, where: str = "", prefix: str = "") -> str:
    """One line per bad field: `sinks.0.path: Field required`, with the file it came from."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        field = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown option (check its spelling; `livewatch plugins --options` lists them)"
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])  # a validator's own words, without "Value error, "
        lines.append(f"  {field}: {msg}")
    head = f"invalid configuration{' in ' + where if where else ''}:"
    return "\n".join([head, *lines])
