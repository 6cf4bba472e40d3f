"""The broker's jars: resolved once from Maven Central by Maven, then reused from a cache.

The cache lives in `$PARCEL_MONITOR_KAFKA_HOME/jars` (default `.kafka/jars` at the repository
root) in a folder named after a hash of the pom, so editing the pom resolves afresh. A folder
only becomes visible once Maven has filled it completely (resolved aside, then renamed), and
an exclusive file lock makes concurrent callers wait for the first one instead of racing it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from monitor.errors import BrokerError

HOME_ENV = "PARCEL_MONITOR_KAFKA_HOME"
COMPLETE_MARKER = ".complete"
# The cold resolution downloads ~45 MB; a slow mirror gets this long before we give up.
MAVEN_TIMEOUT_S = 900


def kafka_home() -> Path:
    """Where jars and the default broker data live: `$PARCEL_MONITOR_KAFKA_HOME` or `.kafka`.

    From a source checkout `.kafka` sits at the repository root; from an installed wheel it
    falls back to `~/.cache/parcel-monitor/kafka`.
    """
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    repo_root = Path(__file__).resolve().parents[2]
    if (repo_root / "pyproject.toml").is_file():
        return repo_root / ".kafka"
    return Path.home() / ".cache" / "parcel-monitor" / "kafka"


def pom_text() -> str:
    """The pom shipped with the package, which lists the broker's runtime."""
    return resources.files("monitor.broker").joinpath("pom.xml").read_text(encoding="utf-8")


def ensure_jars(home: Path | None = None) -> Path:
    """Return the folder holding every jar the broker needs, resolving it with Maven if absent.

    Raises `BrokerError` when Maven is missing or the resolution fails.
    """
    pom = pom_text()
    cache = (home or kafka_home()) / "jars"
    target = cache / hashlib.sha256(pom.encode()).hexdigest()[:12]
    if (target / COMPLETE_MARKER).is_file():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # Another process may have finished while we waited for the lock.
            if not (target / COMPLETE_MARKER).is_file():
                _resolve(pom, target)
    except OSError as err:
        raise BrokerError(f"cannot prepare the Kafka jar cache {cache}: {err}") from err
    return target


def _resolve(pom: str, target: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven ('mvn') is not on PATH; it is needed once to fetch the Kafka jars from "
            "Maven Central"
        )
    with tempfile.TemporaryDirectory(prefix="resolve-", dir=target.parent) as work:
        workdir = Path(work)
        (workdir / "pom.xml").write_text(pom, encoding="utf-8")
        jars = workdir / "jars"
        command = [
            mvn,
            "-B",
            "-q",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={jars}",
        ]
        try:
            done = subprocess.run(
                command,
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=MAVEN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise BrokerError(
                f"resolving the Kafka jars with Maven took over {MAVEN_TIMEOUT_S} s"
            ) from err
        if done.returncode != 0 or not any(jars.glob("kafka_2.13-*.jar")):
            raise BrokerError(
                f"resolving the Kafka jars with Maven failed (exit {done.returncode}): "
                f"{_maven_reason(done.stdout + done.stderr)}"
            )
        (jars / COMPLETE_MARKER).write_text(" ".join(command) + "\n", encoding="utf-8")
        if target.exists():  # left without its marker, e.g. emptied by hand: replace it
            shutil.rmtree(target)
        jars.rename(target)


def _maven_reason(output: str) -> str:
    """The first `[ERROR]` line of Maven's output, or its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("[ERROR]")]
    if errors:
        return errors[0]
    return lines[-1] if lines else "no output"
