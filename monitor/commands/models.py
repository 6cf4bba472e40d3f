"""`parcel-monitor train|export|evaluate`: the model life cycle (training needs the train extra)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from models.registry import MODELS as MODEL_NAMES

if TYPE_CHECKING:
    from monitor.commands import Subparsers
DEFAULT_DATA = Path("data") / "sim"
DEFAULT_CHECKPOINTS = Path("data") / "checkpoints"


def register(subparsers: Subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a model on simulated seasons (needs the train extra: PyTorch)",
        description="Trains MODEL on the simulated seasons under --data (simulated first when "
        "the folder is empty) and writes a checkpoint.",
    )
    train.add_argument("model", choices=MODEL_NAMES)
    train.add_argument("--data", type=Path, default=DEFAULT_DATA, help="simulated seasons")
    train.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINTS, help="checkpoint folder")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, help="default: the model's own")
    train.set_defaults(func=run_train)

    export = subparsers.add_parser(
        "export",
        help="export a trained model to ONNX (opset 17, dynamic batch) for the runtime",
    )
    export.add_argument("model", choices=MODEL_NAMES)
    export.add_argument("--checkpoint", type=Path, help="default: the latest in data/checkpoints")
    export.add_argument(
        "--out", type=Path, help="ONNX file (default: monitor/artifacts/MODEL.onnx)"
    )
    export.set_defaults(func=run_export)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="held-out metrics of the shipped models against their baselines",
    )
    evaluate.add_argument("model", nargs="?", choices=MODEL_NAMES, help="default: all")
    evaluate.add_argument("--data", type=Path, default=DEFAULT_DATA, help="simulated seasons")
    evaluate.add_argument("--onnx", type=Path, help="default: the shipped artifact")
    evaluate.set_defaults(func=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    from models.registry import recipe

    checkpoint = recipe(args.model).train(args.data, args.out, seed=args.seed, epochs=args.epochs)
    print(f"{args.model}: checkpoint {checkpoint}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from models.registry import recipe
    from monitor.errors import ModelError

    checkpoint = args.checkpoint or DEFAULT_CHECKPOINTS / f"{args.model}.pt"
    if not checkpoint.is_file():
        raise ModelError(f"no checkpoint {checkpoint}: run parcel-monitor train {args.model}")
    out = args.out or Path(__file__).parents[1] / "artifacts" / f"{args.model}.onnx"
    recipe(args.model).export(checkpoint, out)
    print(f"{args.model}: {checkpoint} -> {out}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from models.registry import recipe
    from monitor.infer import artifact_path

    names = [args.model] if args.model else list(MODEL_NAMES)
    models = {n: args.onnx if args.onnx and args.model else artifact_path(n) for n in names}
    print(f"{'model':<14} {'dataset':<26} {'method':<28} {'metric':<16} {'value':>10}")
    for name, onnx in models.items():
        for row in recipe(name).evaluate(onnx, args.data):
            print(
                f"{row.model:<14} {row.dataset:<26} {row.method:<28} {row.metric:<16} "
                f"{row.value:>10.4f}"
            )
    return 0
