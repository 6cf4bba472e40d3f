"""Start, stop and inspect the local broker: one node, or a cluster of several for fault tests.

A single broker keeps its node files directly in its data folder. A cluster keeps a
`cluster.json` there and one `node-<id>` folder per node, each a combined broker and controller
in one static quorum; topics get replication factor 3 and `min.insync.replicas=2`, so producing
with `acks=all` keeps working while one node is down.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from monitor.broker.jars import ensure_jars
from monitor.broker.node import (
    LOG_FILE,
    NodeConfig,
    accepts_connections,
    ensure_port_free,
    format_storage,
    free_ports,
    is_formatted,
    launch,
    log_tail,
    new_cluster_id,
    read_config,
    running_pid,
    stop_nodes,
    write_files,
)
from monitor.broker.topics import DEFAULT_PARTITIONS, DEFAULT_TOPICS, count_brokers, create_topics
from monitor.errors import BrokerError, ConfigError

CLUSTER_FILE = "cluster.json"
START_TIMEOUT_S = 120.0
CLUSTER_STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class BrokerHandle:
    """A running Kafka node started by this module."""

    data_dir: Path
    config: NodeConfig
    pid: int

    @property
    def node_id(self) -> int:
        return self.config.node_id

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def bootstrap(self) -> str:
        """`127.0.0.1:PORT`, for `bootstrap_servers`."""
        return self.config.bootstrap

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    def is_running(self) -> bool:
        return running_pid(self.data_dir) == self.pid

    def stop(self, *, kill: bool = False, timeout_s: float = 60.0) -> None:
        """Stop this node (SIGTERM, or SIGKILL to simulate a crash); a no-op once stopped."""
        stop_nodes([self.data_dir], timeout=timeout_s, kill=kill)


@dataclass(frozen=True)
class NodeStatus:
    """One node of a data folder as `broker status` reports it."""

    node_id: int
    port: int
    pid: int | None
    data_dir: Path


def start_broker(
    data_dir: Path | str,
    port: int,
    *,
    partitions: int = DEFAULT_PARTITIONS,
    controller_port: int | None = None,
    topics: Iterable[str] = DEFAULT_TOPICS,
    heap: str = "512m",
    timeout_s: float = START_TIMEOUT_S,
) -> BrokerHandle:
    """Start a single-node Kafka (KRaft) on 127.0.0.1:`port` (0: any free port), create `topics`.

    Formats `data_dir` on first use and reuses its storage afterwards (the data survives a
    restart). `partitions` is the partition count of the created topics and of auto-created
    ones. The controller listens on `controller_port`, by default on the port it had last time
    if that is free, else on any free port. Raises `BrokerError` (with the end of the broker's
    log) when the node cannot start or does not answer within `timeout_s`.
    """
    data_dir = Path(data_dir)
    if (data_dir / CLUSTER_FILE).is_file():
        raise BrokerError(f"{data_dir} holds a multi-node cluster; start it with --nodes")
    _check_positive("partitions", partitions)
    _refuse_if_running([data_dir])
    previous = read_config(data_dir)
    spare = free_ports(2)
    if port == 0:
        port = spare[0]
    _check_port(port)
    if controller_port is None:
        controller_port = _previous_port_if_free(previous, port) or next(
            candidate for candidate in spare if candidate != port
        )
    _check_port(controller_port)
    if controller_port == port:
        raise ConfigError(f"the broker and controller ports must differ (both {port})")
    for taken in (port, controller_port):
        ensure_port_free(taken)
    config = NodeConfig(
        node_id=1,
        port=port,
        controller_port=controller_port,
        voters=((1, controller_port),),
        cluster_id=previous.cluster_id if previous else new_cluster_id(),
        partitions=partitions,
        replication=1,
        min_insync=1,
        heap=heap,
    )
    (handle,) = _launch_nodes([(data_dir, config)], timeout_s)
    _create_or_stop([data_dir], handle.bootstrap, dict.fromkeys(topics, partitions), 1)
    return handle


class ClusterHandle:
    """A running multi-node cluster whose nodes can be stopped and restarted one by one."""

    def __init__(self, data_dir: Path, nodes: dict[int, BrokerHandle]) -> None:
        self.data_dir = data_dir
        self.nodes = nodes

    @property
    def bootstrap(self) -> str:
        """Every node's address, comma-separated, for `bootstrap_servers`."""
        return ",".join(node.bootstrap for node in self.nodes.values())

    def stop_node(self, node_id: int, *, kill: bool = False, timeout_s: float = 60.0) -> None:
        """Stop one node (SIGKILL with `kill`, to simulate a crash); the others keep serving."""
        self._node(node_id).stop(kill=kill, timeout_s=timeout_s)

    def start_node(self, node_id: int, *, timeout_s: float = START_TIMEOUT_S) -> BrokerHandle:
        """Restart a stopped node on its old ports and wait until the cluster counts it again."""
        node = self._node(node_id)
        if node.is_running():
            return node
        ensure_port_free(node.config.port)
        ensure_port_free(node.config.controller_port)
        pid = launch(node.data_dir, ensure_jars(), node.config.heap)
        self.nodes[node_id] = BrokerHandle(node.data_dir, node.config, pid)
        _wait_ready([self.nodes[node_id]], self.bootstrap, len(self.nodes), timeout_s)
        return self.nodes[node_id]

    def stop(self) -> None:
        """Stop every node (see `stop_broker`); a no-op for nodes already stopped."""
        stop_broker(self.data_dir)

    def _node(self, node_id: int) -> BrokerHandle:
        if node_id not in self.nodes:
            raise ConfigError(
                f"no node {node_id} in cluster {self.data_dir} (has {list(self.nodes)})"
            )
        return self.nodes[node_id]


def start_cluster(
    data_dir: Path | str,
    n: int = 3,
    base_port: int | None = None,
    *,
    partitions: int = DEFAULT_PARTITIONS,
    topics: Iterable[str] = DEFAULT_TOPICS,
    heap: str = "384m",
    timeout_s: float = 180.0,
) -> ClusterHandle:
    """Start `n` combined broker+controller nodes forming one cluster, and create `topics`.

    Brokers listen on `base_port`, `base_port + 1`, ... and controllers on the `n` ports after
    those (any free ports when `base_port` is None). A restart reuses the folder's ports and
    storage. Topics get replication factor min(n, 3) and `min.insync.replicas` one less.
    """
    data_dir = Path(data_dir)
    if n < 2:
        raise ConfigError(f"a cluster needs at least 2 nodes, not {n}; use start_broker")
    _check_positive("partitions", partitions)
    replication = min(n, 3)
    configs = _cluster_configs(data_dir, n, base_port, partitions, replication, heap)
    node_dirs = [_node_dir(data_dir, config.node_id) for config in configs]
    _refuse_if_running(node_dirs)
    for config in configs:
        ensure_port_free(config.port)
        ensure_port_free(config.controller_port)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / CLUSTER_FILE).write_text(json.dumps({"nodes": [c.node_id for c in configs]}))
    handles = _launch_nodes(list(zip(node_dirs, configs, strict=True)), timeout_s)
    cluster = ClusterHandle(data_dir, {handle.node_id: handle for handle in handles})
    _create_or_stop(node_dirs, cluster.bootstrap, dict.fromkeys(topics, partitions), replication)
    return cluster


def _cluster_configs(
    data_dir: Path, n: int, base_port: int | None, partitions: int, replication: int, heap: str
) -> list[NodeConfig]:
    previous = [read_config(_node_dir(data_dir, node_id)) for node_id in range(1, n + 1)]
    known = [config for config in previous if config is not None]
    if known:
        if len(known) != n or len(known[0].voters) != n:
            raise BrokerError(f"{data_dir} holds a cluster of another size than {n} nodes")
        if base_port is not None and known[0].port != base_port:
            raise BrokerError(
                f"{data_dir} holds a cluster on ports from {known[0].port}, not {base_port}"
            )
        return known
    ports = free_ports(2 * n) if base_port is None else list(range(base_port, base_port + 2 * n))
    for port in ports:
        _check_port(port)
    voters = tuple((node_id, ports[n + node_id - 1]) for node_id in range(1, n + 1))
    cluster_id = new_cluster_id()
    return [
        NodeConfig(
            node_id=node_id,
            port=ports[node_id - 1],
            controller_port=controller_port,
            voters=voters,
            cluster_id=cluster_id,
            partitions=partitions,
            replication=replication,
            min_insync=replication - 1,
            heap=heap,
        )
        for node_id, controller_port in voters
    ]


def stop_broker(
    data_dir: Path | str, *, timeout_s: float | None = None, kill: bool = False
) -> bool:
    """Stop the broker or cluster running from `data_dir`; True if something was running.

    Sends SIGTERM (SIGKILL with `kill`), waits up to `timeout_s`, then SIGKILLs. Idempotent.
    The default wait is 60 s for one node and 15 s for a cluster: nodes stopped together lose
    their controller quorum and cannot all finish KRaft's controlled shutdown, so the last ones
    are killed; their logs are recovered on the next start.
    """
    node_dirs = _node_dirs(Path(data_dir))
    if timeout_s is None:
        timeout_s = 60.0 if len(node_dirs) == 1 else CLUSTER_STOP_TIMEOUT_S
    return bool(stop_nodes(node_dirs, timeout=timeout_s, kill=kill))


def broker_status(data_dir: Path | str) -> list[NodeStatus]:
    """Every node known in `data_dir`, with its pid when running; empty for an unused folder."""
    statuses = []
    for node_dir in _node_dirs(Path(data_dir)):
        config = read_config(node_dir)
        if config is not None:
            statuses.append(
                NodeStatus(config.node_id, config.port, running_pid(node_dir), node_dir)
            )
    return statuses


def _launch_nodes(nodes: list[tuple[Path, NodeConfig]], timeout_s: float) -> list[BrokerHandle]:
    jars = ensure_jars()
    for node_dir, config in nodes:
        write_files(node_dir, config)
        if not is_formatted(node_dir):
            format_storage(node_dir, config, jars)
    handles = []
    try:
        for node_dir, config in nodes:
            handles.append(BrokerHandle(node_dir, config, launch(node_dir, jars, config.heap)))
    except OSError as err:
        stop_nodes([handle.data_dir for handle in handles], kill=True)
        raise BrokerError(f"cannot start Java for Kafka: {err}") from err
    bootstrap = ",".join(handle.bootstrap for handle in handles)
    _wait_ready(handles, bootstrap, len(handles), timeout_s)
    return handles


def _wait_ready(nodes: list[BrokerHandle], bootstrap: str, brokers: int, timeout_s: float) -> None:
    """Wait until the cluster reports `brokers` live brokers; kill `nodes` and raise if not."""
    node_dirs = [node.data_dir for node in nodes]
    deadline = time.monotonic() + timeout_s
    while True:
        dead = [node_dir for node_dir in node_dirs if running_pid(node_dir) is None]
        if dead:
            stop_nodes(node_dirs, kill=True)
            raise BrokerError(f"Kafka in {dead[0]} exited while starting: {log_tail(dead[0])}")
        # Kafka clients only once every starting node accepts connections: kafka-python 3.0
        # leaks a socket on each refused connection attempt.
        if all(accepts_connections(node.port) for node in nodes) and (
            count_brokers(bootstrap) >= brokers
        ):
            return
        if time.monotonic() > deadline:
            stop_nodes(node_dirs, kill=True)
            raise BrokerError(
                f"Kafka on {bootstrap} did not answer within {timeout_s:.0f} s: "
                f"{log_tail(node_dirs[0])}"
            )
        time.sleep(0.5)


def _create_or_stop(
    node_dirs: list[Path], bootstrap: str, topics: dict[str, int], replication: int
) -> None:
    """Create the start's topics; on failure stop the nodes, so no caller is left a stray."""
    try:
        create_topics(bootstrap, topics, replication=replication)
    except BrokerError:
        stop_nodes(node_dirs, kill=True)
        raise


def _node_dirs(data_dir: Path) -> list[Path]:
    cluster_file = data_dir / CLUSTER_FILE
    if not cluster_file.is_file():
        return [data_dir]
    try:
        node_ids = [int(node_id) for node_id in json.loads(cluster_file.read_text())["nodes"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BrokerError(f"cluster description {cluster_file} is unreadable: {err}") from err
    return [_node_dir(data_dir, node_id) for node_id in node_ids]


def _node_dir(data_dir: Path, node_id: int) -> Path:
    return data_dir / f"node-{node_id}"


def _refuse_if_running(node_dirs: list[Path]) -> None:
    for node_dir in node_dirs:
        pid = running_pid(node_dir)
        if pid is not None:
            raise BrokerError(f"a Kafka broker already runs from {node_dir} (pid {pid})")


def _previous_port_if_free(previous: NodeConfig | None, broker_port: int) -> int | None:
    if previous is None or previous.controller_port == broker_port:
        return None
    try:
        ensure_port_free(previous.controller_port)
    except BrokerError:
        return None
    return previous.controller_port


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise ConfigError(f"port {port} is outside 1-65535")


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, not {value}")
