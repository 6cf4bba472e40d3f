"""`parcel-monitor broker`: run the local Kafka broker (start, stop, status, fetch its jars)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.commands import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="run the local Apache Kafka broker (KRaft) used by tests, the demo and benchmarks",
        description="Run a real Apache Kafka 4.x broker on 127.0.0.1 from jars Maven fetches once.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    start = actions.add_parser("start", help="start a broker (or --nodes N of them) and wait")
    start.add_argument("--port", type=_port, default=9092, help="broker port (default 9092)")
    _data_argument(start)
    start.add_argument(
        "--nodes", type=int, default=1, help="nodes; 3 gives a replicated cluster (default 1)"
    )
    start.add_argument(
        "--partitions", type=int, default=6, help="partitions of each topic (default 6)"
    )
    start.add_argument(
        "--controller-port", type=_port, help="KRaft controller port of a single broker"
    )
    start.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for it")
    start.set_defaults(func=_start)

    stop = actions.add_parser("stop", help="stop the broker running from --data")
    _data_argument(stop)
    stop.set_defaults(func=_stop)

    status = actions.add_parser("status", help="say whether the broker of --data runs")
    _data_argument(status)
    status.set_defaults(func=_status)

    fetch = actions.add_parser("fetch", help="resolve the broker's jars with Maven (done once)")
    fetch.set_defaults(func=_fetch)


def _data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, help="broker data folder (default: data/ in the Kafka home)"
    )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535")
    return port


def _data_dir(args: argparse.Namespace) -> Path:
    from monitor.broker import kafka_home

    return args.data if args.data is not None else kafka_home() / "data"


def _start(args: argparse.Namespace) -> int:
    from monitor.broker import start_broker, start_cluster
    from monitor.errors import ConfigError

    data_dir = _data_dir(args)
    if args.nodes < 1:
        raise ConfigError(f"--nodes must be at least 1, not {args.nodes}")
    if args.nodes == 1:
        node = start_broker(
            data_dir,
            args.port,
            partitions=args.partitions,
            controller_port=args.controller_port,
            timeout_s=args.timeout,
        )
        print(f"Kafka broker running on {node.bootstrap} (pid {node.pid}, log {node.log_path})")
        return 0
    if args.controller_port is not None:
        raise ConfigError("--controller-port applies to a single broker; a cluster uses --port")
    cluster = start_cluster(
        data_dir, args.nodes, args.port, partitions=args.partitions, timeout_s=args.timeout
    )
    print(f"Kafka cluster of {len(cluster.nodes)} nodes running on {cluster.bootstrap}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    from monitor.broker import stop_broker

    data_dir = _data_dir(args)
    stopped = stop_broker(data_dir)
    print(f"Kafka stopped in {data_dir}" if stopped else f"no Kafka was running in {data_dir}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from monitor.broker import broker_status

    data_dir = _data_dir(args)
    nodes = broker_status(data_dir)
    if not nodes:
        print(f"no Kafka broker was ever started in {data_dir}")
        return 1
    for node in nodes:
        state = f"running (pid {node.pid})" if node.pid is not None else "stopped"
        print(f"node {node.node_id} on 127.0.0.1:{node.port}: {state}")
    return 0 if all(node.pid is not None for node in nodes) else 1


def _fetch(args: argparse.Namespace) -> int:
    from monitor.broker import ensure_jars

    jars = ensure_jars()
    print(f"Kafka jars ready in {jars} ({len(list(jars.glob('*.jar')))} jars)")
    return 0
