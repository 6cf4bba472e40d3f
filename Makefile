# One entry point for people and CI. `make demo` runs the main job on the bundled sample,
# `make test` runs every test and lint; both install what they need first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install demo test pytest cargo-test lint fmt bench

$(BIN)/maturin:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "maturin>=1.7,<2"

# Builds the Rust extension (release) and installs the package in editable mode with the dev tools
# and the training extra (PyTorch: a large download the first time, then pip's cache).
install: $(BIN)/maturin
	$(BIN)/pip install -q -e ".[dev,train]"

# The main job end to end: local Kafka broker, the bundled real season published, one worker
# until idle, events read back, a parcel's time series drawn (all under out/demo).
demo: install
	$(BIN)/parcel-monitor demo

# The Kafka tests need the broker's jars: fetched (once, cached in .kafka/) before the run, so a
# Maven failure shows as itself rather than as failing fixtures.
pytest: install
	$(BIN)/parcel-monitor broker fetch
	$(BIN)/pytest

cargo-test:
	cargo test --workspace

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest monitor._core
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --all-targets --features rust_core/python -- -D warnings

test: pytest cargo-test lint

# The slow tests: full-size tile simulation, three-broker cluster, timing-sensitive fencing.
test-slow: install
	$(BIN)/pytest -m slow

fmt: $(BIN)/maturin
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	cargo fmt --all

bench: install
	$(BIN)/python -m benchmarks
