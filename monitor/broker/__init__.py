"""A real local Apache Kafka 4.x broker (KRaft) for tests, the demo and benchmarks.

Its jars come from Maven Central through Maven (`pom.xml` beside this file) and run on the
machine's Java 17. `start_broker` runs one node; `start_cluster` runs several (replication
factor 3) whose nodes fault tests stop and restart one at a time.
"""

from monitor.broker.cluster import (
    BrokerHandle,
    ClusterHandle,
    NodeStatus,
    broker_status,
    start_broker,
    start_cluster,
    stop_broker,
)
from monitor.broker.jars import ensure_jars, kafka_home
from monitor.broker.topics import (
    DEFAULT_PARTITIONS,
    DEFAULT_TOPICS,
    create_topics,
    topic_partitions,
)

__all__ = [
    "DEFAULT_PARTITIONS",
    "DEFAULT_TOPICS",
    "BrokerHandle",
    "ClusterHandle",
    "NodeStatus",
    "broker_status",
    "create_topics",
    "ensure_jars",
    "kafka_home",
    "start_broker",
    "start_cluster",
    "stop_broker",
    "topic_partitions",
]
