"""`parcel-monitor demo`, the README's run command, on the bundled real sample."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from monitor.cli import main
from monitor.store import ObservationStore


@pytest.mark.kafka
def test_demo_runs_the_main_job_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "acquisitions processed: 22" in out
    total = int(re.search(r"read back with read_committed: (\d+) events, by type:", out)[1])
    by_type = {k: int(n) for k, n in re.findall(r"^  ([a-z.]+)\s+(\d+)$", out, re.MULTILINE)}
    assert by_type["observation"] == 924
    assert by_type["reconstruction"] > 0  # cloudy Mol dates, rebuilt from S1 and a clear date
    assert by_type["practice.mowing"] > 0  # the models ran in the worker
    assert sum(by_type.values()) == total
    models = (tmp_path / "model-events.jsonl").read_bytes().splitlines()
    assert len(models) == total - 924
    reports = list(tmp_path.glob("report-*.png"))
    assert len(reports) == 1
    assert reports[0].stat().st_size > 30_000
    store = ObservationStore(tmp_path / "store")
    observed = [p for p in store.products() if p.source == "observed"]
    assert len(observed) == 22
    rows = store.scan().collect()
    assert rows.filter(pl.col("source") == "observed").height == 22 * 42
    assert rows.filter(pl.col("source") == "reconstructed").height == by_type["reconstruction"]
