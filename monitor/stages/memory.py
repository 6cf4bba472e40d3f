"""What the stages remember between acquisitions: per-product state files, read "as of" one.

A stage writes, per product, what that product emitted (`ObservationStore.write_state`); an
acquisition consults the state of the *other* products of its tile and season acquired before
it (same instant: smaller product id first). Its own file never counts, so redoing it gives
the same events; later products never count, so the answer does not depend on how much of the
season the store already holds.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from monitor.stac import Acquisition
from monitor.store import ObservationStore

#: Every state table has this column: the acquisition time of the product that wrote it.
ACQUIRED = "acquired"


def state_before(
    store: ObservationStore, acq: Acquisition, kind: str, schema: Mapping[str, pl.DataType]
) -> pl.DataFrame:
    """The state rows of `kind` written by the products of `acq`'s tile and season before it."""
    season = store.season_of(acq.acquired)
    state = store.read_state(acq.tile, season, kind, schema, exclude=acq.product_id)
    earlier = (pl.col(ACQUIRED) < acq.acquired) | (
        (pl.col(ACQUIRED) == acq.acquired) & (pl.col("product_id") < acq.product_id)
    )
    return state.filter(earlier)


def write_state(store: ObservationStore, acq: Acquisition, kind: str, rows: pl.DataFrame) -> None:
    """Replace `acq`'s state file of `kind` with `rows` (stamped with its acquisition time);
    written even when empty, so a redo replaces a previous, different answer."""
    stamped = rows.with_columns(pl.lit(acq.acquired).cast(pl.Datetime("us", "UTC")).alias(ACQUIRED))
    store.write_state(acq.product_id, acq.tile, store.season_of(acq.acquired), kind, stamped)
