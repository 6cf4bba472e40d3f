"""`parcel-monitor simulate`: a synthetic season shaped exactly like real deliveries.

`simulate_season(out, tile_size, n_parcels, season, seed, ...)` writes, under `out`:

```
parcels.parquet                 GeoParquet 1.0 (EPSG:32631): id_parcel, code_cultu, surf_parc (ha)
catalog.json                    STAC Catalog linking every item
s2/S2_31UFS_YYYYMMDD_L2A/       item.json + B02 B03 B04 B08 (10 m), B05 B06 B07 B8A B11 B12
                                and SCL (20 m): uint16 reflectance x10⁴ (nodata 0), SCL uint8
s1/S1_IW_GRD_31UFS_YYYYMMDD/    item.json + VV VH: float32 γ⁰ in dB (10 m)
preview/<S2 id>.png             true colour, parcel outlines, SCL clouds (cyan) and shadows
truth/                          the ground truth (below)
```

Rasters are COGs (deflate, 512-px tiles, overviews) on the grid of MGRS tile 31UFS, whose
upper-left corner is (600000, 5700000); a `tile_size` below 10980 takes its north-west corner.
S1 backscatter is stored in steps of 1/64 dB (far below its ~2 dB speckle).

Command line (`parcel-monitor simulate --help`):

```
parcel-monitor simulate --out DIR --tile-size 512 --parcels 300 --season 2025 --seed 0
parcel-monitor simulate --out DIR --tile-size 10980 --parcels 200000 --dates 1 --no-s1
    [--start YYYY-MM-DD] [--end YYYY-MM-DD] [--crops PPH=3,BTH,MIS] [--no-clear-truth]
```

The season runs 1 March - 31 October (S2 every 5 days, S1 every 6, a few acquisitions
missing); `--dates N` keeps the first N of each sensor. Same seed, same bytes.

What is modelled (one module each): `fields` (recursive cuts of the tile into convex fields
with hedges and roads, forests and villages in clusters, 5 % heterogeneous parcels),
`phenology` (double-logistic green cover per crop with per-parcel jitter; sowing, mowing,
harvest and ploughing dates), `spectra` (endmember mixing: green vegetation, residue,
flowers, soil darkened by moisture, built-up, water, shade; texture along the mixing line),
`weather` (soil moisture from random rain; per-date cloudiness), `clouds` (fractal clouds,
shadows, cirrus, haze and a Sen2Cor-like SCL that misses thin cloud edges), `sar` (water-cloud
model over a moist rough soil, gamma speckle), `render` (one acquisition, band by band),
`writer` (COG, STAC, GeoParquet), `truth`, `preview`, `season` (orchestration).

## Ground truth (`truth/`)

`parcels.parquet`, one row per parcel:

| column | type | meaning |
| --- | --- | --- |
| id_parcel | string | as in `parcels.parquet` |
| declared_code | string | the declared crop (`code_cultu`) |
| cover | string | true cover of the main part (= declared) |
| second_cover | string, null | true cover of the second part of a heterogeneous parcel |
| second_fraction | float | share of the parcel's area under `second_cover` (0 if none) |
| heterogeneous | bool | two covers inside one declared parcel (~5 % of parcels) |
| area_ha | float | parcel area |
| sowing | date, null | seedbed of spring crops (null for winter crops and grassland) |
| green_up, senescence | date | centres of the green-up and senescence logistic curves |
| harvest | date, null | harvest of the main part (null: grassland, fallow) |
| mowings | int8 | number of mowings of the main part |

`practices.parquet`, one row per practice inside the simulated window:

| column | type | meaning |
| --- | --- | --- |
| id_parcel | string | |
| type | string | `mowing`, `harvest` or `ploughing` |
| date | date | day it happened |
| cover | string | cover of the part where it happened |
| part | string | `main` or `second` (the second cover of a heterogeneous parcel) |
| area_fraction | float | share of the parcel's area concerned |
| ndvi_before, ndvi_after | float | clear-sky mean NDVI of that part the day before / after |

`units.tif` (int32, 10 m) + `units.parquet` (`unit`, `id_parcel` or null, `cover`): the true
cover of every pixel; unit 0 is the land between fields (hedges, verges, roads).

`s2_dates.parquet`: `id`, `datetime`, `cloud_share` (true share of the tile under cloud),
`eo_cloud_cover` (% of SCL 8/9/10, as in the item), `clear_truth` (whether the folder below
exists). `s1_dates.parquet`: `id`, `datetime`, `soil_moisture` (regional, m³/m³).

`s2_clear/<S2 id>/` for every date with clouds, shadows or cirrus: the same ten bands as the
item (same grids and encoding) without atmosphere, i.e. the clear-sky reflectance to train and
evaluate cloud removal (equal to the item's bands wherever the sky is clear, up to the haze:
at most 0.006), plus `SKY.tif` at 20 m, uint8, three bands: true cloud opacity (%), shadow
darkening (%) and cirrus reflectance (x 1000).

Crop codes: see `monitor.simulate.covers`.
"""

from monitor.simulate.covers import crop_shares
from monitor.simulate.season import SimulationSummary, plan_acquisitions, simulate_season

__all__ = ["SimulationSummary", "crop_shares", "plan_acquisitions", "simulate_season"]
