"""Where the bundled real samples live (see `examples/README.md` for provenance)."""

from pathlib import Path


def sample_dir() -> Path:
    """The repository's `examples/` folder holding the real Sentinel and parcel samples."""
    return Path(__file__).parents[1] / "examples"


def sample_path(*parts: str) -> Path:
    """Path of a sample file or folder, e.g. `sample_path("mol-2023", "segments.gpkg")`."""
    path = sample_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"sample {path} not found")
    return path
