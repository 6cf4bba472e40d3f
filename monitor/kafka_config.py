"""Kafka client settings from a `key=value` file: SASL, TLS and tuning for the worker's clients.

One setting per line, `#` starts a comment, keys are kafka-python's (`security_protocol`,
`sasl_mechanism`, `sasl_plain_username`, `ssl_cafile`, `linger_ms`...); Java-style dotted names
(`security.protocol`) are accepted too. Values are typed like kafka-python's defaults (numbers,
`true`/`false`, text). Settings the worker's guarantees rest on (group, transactions,
isolation, serializers) are refused. Values of secret settings never appear in logs or errors:
use `describe` to log a configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError

KafkaSetting = str | int | float | bool

#: Set by the worker itself: exactly-once processing depends on them.
MANAGED_KEYS = frozenset(
    {
        "bootstrap_servers",
        "group_id",
        "enable_auto_commit",
        "auto_offset_reset",
        "isolation_level",
        "transactional_id",
        "acks",
        "enable_idempotence",
        "consumer_timeout_ms",
        "key_serializer",
        "value_serializer",
        "key_deserializer",
        "value_deserializer",
    }
)
#: Settings that take Python objects, not text.
OBJECT_KEYS = frozenset(
    {
        "api_version",
        "ssl_context",
        "sasl_oauth_token_provider",
        "selector",
        "socket_options",
        "metric_reporters",
        "kafka_client",
        "partitioner",
        "partition_assignment_strategy",
        "default_offset_commit_callback",
    }
)
SECRET_KEYS = frozenset({"sasl_plain_password", "ssl_password"})
_TRUE, _FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})


def _client_defaults() -> tuple[dict[str, Any], dict[str, Any]]:
    from kafka import KafkaConsumer, KafkaProducer

    return dict(KafkaConsumer.DEFAULT_CONFIG), dict(KafkaProducer.DEFAULT_CONFIG)


def read_kafka_config(path: Path) -> dict[str, KafkaSetting]:
    """The settings of a `key=value` file, typed and checked against kafka-python's names."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Kafka config {path}: cannot read: {exc}") from exc
    settings: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().replace(".", "_")
        if not sep or not key:
            # Show no part of the line: it may hold a password.
            raise ConfigError(f"Kafka config {path}, line {number}: expected key=value")
        if key in settings:
            raise ConfigError(f"Kafka config {path}, line {number}: {key} is set twice")
        settings[key] = value.strip()
    return parse_kafka_settings(settings, source=str(path))


def parse_kafka_settings(
    settings: Mapping[str, str], *, source: str = "Kafka config"
) -> dict[str, KafkaSetting]:
    """Type text settings like kafka-python's defaults; refuse unknown or managed keys."""
    consumer, producer = _client_defaults()
    known = {**producer, **consumer}
    typed: dict[str, KafkaSetting] = {}
    for key, value in settings.items():
        if key in MANAGED_KEYS:
            raise ConfigError(f"{source}: {key} is set by the worker and cannot be overridden")
        if key in OBJECT_KEYS:
            raise ConfigError(f"{source}: {key} takes a Python object, not a text value")
        if key not in known:
            raise ConfigError(f"{source}: unknown Kafka client setting {key!r}")
        typed[key] = _typed(key, value, known[key], source)
    return typed


def _typed(key: str, value: str, default: object, source: str) -> KafkaSetting:
    shown = "(hidden)" if key in SECRET_KEYS else repr(value)
    if isinstance(default, bool):
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(f"{source}: {key} must be true or false, not {shown}")
    if isinstance(default, int | float):
        try:
            return type(default)(value)
        except ValueError:
            kind = "an integer" if isinstance(default, int) else "a number"
            raise ConfigError(f"{source}: {key} must be {kind}, not {shown}") from None
    return value


def client_settings(
    settings: Mapping[str, KafkaSetting],
) -> tuple[dict[str, KafkaSetting], dict[str, KafkaSetting]]:
    """Split settings into (consumer, producer) ones; shared ones (TLS, SASL) go to both."""
    consumer, producer = _client_defaults()
    return (
        {k: v for k, v in settings.items() if k in consumer},
        {k: v for k, v in settings.items() if k in producer},
    )


def describe(settings: Mapping[str, KafkaSetting]) -> str:
    """One log line of the settings, secret values hidden."""
    shown = (f"{k}=***" if k in SECRET_KEYS else f"{k}={v}" for k, v in sorted(settings.items()))
    return ", ".join(shown) or "(none)"
