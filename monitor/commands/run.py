"""`parcel-monitor run`: the streaming worker, one member of a Kafka consumer group."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.commands.model_flags import add_model_arguments, stage_options

if TYPE_CHECKING:
    from monitor.commands import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="process acquisitions from Kafka into parcel events, exactly once",
        description=(
            "Consume STAC Items from the `acquisitions` topic as a member of a consumer group, "
            "observe the parcels, write the store, run the models (cloud removal, "
            "heterogeneity, practices) and produce parcel events to `parcel-events` "
            "in Kafka transactions (events and offsets commit together). Bad messages go to "
            "`acquisitions.dlq` with a `reason` header. SIGTERM or Ctrl-C stops it cleanly."
        ),
    )
    parser.add_argument("--bootstrap", required=True, metavar="HOST:PORT", help="Kafka brokers")
    parser.add_argument("--parcels", required=True, type=Path, help="GeoPackage or GeoParquet")
    parser.add_argument(
        "--id-column", default="id_parcel", help="parcel id column (default id_parcel)"
    )
    parser.add_argument("--store", required=True, type=Path, help="observation store folder")
    parser.add_argument("--label-cache", type=Path, help="folder caching label rasters")
    parser.add_argument(
        "--group", default="parcel-monitor", help="consumer group (default parcel-monitor)"
    )
    parser.add_argument(
        "--worker-name",
        help="this instance's name, unique in the group and stable across its restarts: the "
        "transactional id is parcel-monitor-NAME (default: the host name)",
    )
    parser.add_argument(
        "--asset-root",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="folder asset files must be under (repeatable; default: any absolute path). "
        "Relative hrefs are always refused: a Kafka message has no folder",
    )
    parser.add_argument(
        "--exit-when-idle",
        type=float,
        metavar="SECONDS",
        help="exit after this long without a new message (default: run until stopped)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=32,
        help="at most this many messages per transaction (default 32)",
    )
    parser.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics on this port (0: any free)"
    )
    parser.add_argument(
        "--metrics-addr",
        default="127.0.0.1",
        help="address of the metrics endpoint (default 127.0.0.1)",
    )
    parser.add_argument(
        "--kafka-config",
        type=Path,
        metavar="FILE",
        help="key=value kafka-python client settings (security_protocol, sasl_*, ssl_*, ...)",
    )
    parser.add_argument("--topic", default="acquisitions", help="source topic")
    parser.add_argument("--events-topic", default="parcel-events", help="parcel event topic")
    parser.add_argument("--dlq-topic", default="acquisitions.dlq", help="dead-letter topic")
    parser.add_argument(
        "--ledger-topic",
        default="acquisitions.done",
        help="topic of the products whose events are committed (default acquisitions.done)",
    )
    add_model_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from monitor.kafka_config import read_kafka_config
    from monitor.metrics import WorkerMetrics, serve
    from monitor.parcels import load_parcels
    from monitor.pipeline import Engine, EngineConfig
    from monitor.stages.defaults import default_stages
    from monitor.store import ObservationStore
    from monitor.worker import Worker, WorkerConfig, href_policy

    _configure_logging()
    options = stage_options(args)
    client_config = read_kafka_config(args.kafka_config) if args.kafka_config else {}
    names = {"worker_name": args.worker_name} if args.worker_name else {}
    config = WorkerConfig(
        bootstrap=args.bootstrap,
        group_id=args.group,
        source_topic=args.topic,
        events_topic=args.events_topic,
        dlq_topic=args.dlq_topic,
        ledger_topic=args.ledger_topic,
        exit_when_idle=args.exit_when_idle,
        max_batch=args.max_batch,
        client_config=client_config,
        **names,
    )
    engine = Engine(
        EngineConfig(
            parcels=load_parcels(args.parcels, id_column=args.id_column),
            store=ObservationStore(args.store),
            label_cache=args.label_cache,
            href_policy=href_policy(args.asset_root),
            detected_at=lambda: datetime.now(UTC),
            stages=[] if options is None else default_stages(options),
        )
    )
    metrics = WorkerMetrics()
    server = None
    if args.metrics_port is not None:
        server = serve(metrics, args.metrics_port, args.metrics_addr)
        host, port = server.server_address[:2]
        logging.getLogger("monitor.worker").info("metrics on http://%s:%d/metrics", host, port)
    worker = Worker(engine, config, metrics)
    previous = {
        sig: signal.signal(sig, _stopper(worker)) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        summary = worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server is not None:
            server.shutdown()
            server.server_close()
    print(summary.text())
    return 0


def _stopper(worker: Any) -> Any:
    def handler(signum: int, frame: object) -> None:
        logging.getLogger("monitor.worker").info(
            "%s: finishing the current message, then exiting", signal.Signals(signum).name
        )
        worker.stop()

    return handler


def _configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # The worker logs one line per acquisition with everything the pipeline's line has.
    logging.getLogger("monitor.pipeline").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.WARNING)
