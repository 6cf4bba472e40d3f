"""Topics of the local broker, and the check that it answers Kafka clients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.errors import BrokerError, ConfigError

# The engine's topics: STAC items in, items that failed validation, parcel events out, and the
# ledger of products whose events are committed (see `monitor.worker`).
DEFAULT_TOPICS: tuple[str, ...] = (
    "acquisitions",
    "acquisitions.dlq",
    "parcel-events",
    "acquisitions.done",
)
DEFAULT_PARTITIONS = 6


def create_topics(
    bootstrap: str, topics: Mapping[str, int], replication: int = 1, *, timeout_s: float = 60.0
) -> list[str]:
    """Create each missing topic with its partition count; return the names created.

    Idempotent: topics that exist already are left as they are, even with another partition
    count. Returns once every new partition has a leader.
    """
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    for name, partitions in topics.items():
        if not name or partitions < 1:
            raise ConfigError(f"topic {name!r} needs a name and at least 1 partition")
    admin = _admin(bootstrap, timeout_s)
    try:
        missing = sorted(set(topics) - set(admin.list_topics()))
        created = []
        for name in missing:
            try:
                admin.create_topics(
                    {name: {"num_partitions": topics[name], "replication_factor": replication}},
                    timeout_ms=int(timeout_s * 1000),
                )
            except TopicAlreadyExistsError:  # someone else created it meanwhile
                continue
            created.append(name)
        if created:
            admin.wait_for_topics(created, timeout_ms=int(timeout_s * 1000))
        return created
    except KafkaError as err:
        raise BrokerError(f"cannot create topics {sorted(topics)} on {bootstrap}: {err}") from err
    finally:
        admin.close()


def topic_partitions(bootstrap: str, names: list[str]) -> dict[str, int]:
    """Partition count of each named topic that exists."""
    from kafka.errors import KafkaError

    admin = _admin(bootstrap, 30.0)
    try:
        described = admin.describe_topics(names)
    except KafkaError as err:
        raise BrokerError(f"cannot describe topics {names} on {bootstrap}: {err}") from err
    finally:
        admin.close()
    return {t["name"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


def count_brokers(bootstrap: str, timeout_s: float = 5.0) -> int:
    """How many brokers the cluster at `bootstrap` reports; 0 when it does not answer."""
    from kafka.errors import KafkaError

    try:
        admin = _admin(bootstrap, timeout_s)
    except BrokerError:
        return 0
    try:
        return len(admin.describe_cluster()["brokers"])
    except (KafkaError, OSError):
        return 0
    finally:
        admin.close()


def _admin(bootstrap: str, timeout_s: float) -> Any:
    """A connected `KafkaAdminClient`; `BrokerError` when nothing answers at `bootstrap`."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    timeout_ms = int(timeout_s * 1000)
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="parcel-monitor-broker",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except (KafkaError, OSError) as err:
        raise BrokerError(f"no Kafka broker answers at {bootstrap}: {err}") from err
