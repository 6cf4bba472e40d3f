"""Where the bundled real samples live (see `examples/README.md` for provenance)."""

from pathlib import Path


def sample_dir() -> Path:
    """The repository's `examples/` folder holding the real Sentinel and parcel samples."""
    return Path(__file__).parents[1] / "examples"
