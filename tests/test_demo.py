"""`parcel-monitor demo`, the README's run command, on the bundled real sample."""

from __future__ import annotations

from pathlib import Path

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
    assert "read back with read_committed: 924 events (924 observation)" in out
    reports = list(tmp_path.glob("report-*.png"))
    assert len(reports) == 1
    assert reports[0].stat().st_size > 30_000
    store = ObservationStore(tmp_path / "store")
    assert len(store.products()) == 22
    assert store.scan().collect().height == 22 * 42
