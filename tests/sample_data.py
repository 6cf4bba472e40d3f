"""Where the real sample data lives: the repository's `examples/` (bundled with attribution),
else the shared data folder next to the checkout."""

from pathlib import Path

_ROOTS = (
    Path(__file__).parents[1] / "examples",
    Path(__file__).parents[2] / "shared" / "data",
)


def sample_path(*parts: str) -> Path:
    """Path of a sample file or folder, e.g. `sample_path("mol-2023", "segments.gpkg")`."""
    for root in _ROOTS:
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"sample {'/'.join(parts)} not found under {[str(r) for r in _ROOTS]}")
