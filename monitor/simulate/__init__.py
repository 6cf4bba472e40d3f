"""`parcel-monitor simulate`: a synthetic season shaped exactly like real deliveries.

`simulate_season(out, tile_size, n_parcels, season, seed, ...)` writes, under `out`:

```
parcels.parquet                 GeoParquet 1.0 (EPSG:32631): id_parcel, code_cultu, surf_parc (ha)
catalog.json                    STAC Catalog linking every item
s2/S2_31UFS_YYYYMMDD_L2A/       item.json + B02 B03 B04 B08 (10 m), B05 B06 B07 B8A B11 B12
                                and SCL (20 m): uint16 reflectance x10⁴ (nodata 0, 65535 where
                                the detector saturated), SCL uint8
s1/S1_IW_GRD_31UFS_YYYYMMDD/    item.json + VV VH: float32 γ⁰ in dB (10 m)
preview/<S2 id>.png             true colour, parcel outlines, SCL clouds (cyan) and shadows
truth/                          the ground truth (below)
```

Rasters are COGs (ZSTD level 1 with a predictor, 512-px tiles; overviews on the delivered
assets, none on the ground truth) on the grid of MGRS tile 31UFS, whose upper-left corner is
(600000, 5700000); a `tile_size` below 10980 takes its north-west corner. S1 backscatter is
stored in steps of 1/64 dB (far below its ~2 dB speckle). Items carry `platform`, S2
`eo:cloud_cover` and `eo:snow_cover` (% of SCL 8-10 and 11), S1 `sat:orbit_state`,
`sat:relative_orbit` and `view:incidence_angle` (mean over the window).

Command line (`parcel-monitor simulate --help`):

```
parcel-monitor simulate --out DIR --tile-size 512 --parcels 300 --season 2025 --seed 0
parcel-monitor simulate --out DIR --tile-size 10980 --parcels 200000 --dates 1 --no-s1
    [--start YYYY-MM-DD] [--end YYYY-MM-DD] [--crops PPH=3,BTH,MIS] [--no-clear-truth]
```

The season runs 1 March - 31 October: S2 every 5 days (one track, Sentinel-2A and 2B
alternating), S1 from two relative orbits of a 12-day cycle (descending 37 at 05:50 UTC, then
ascending 88 at 17:30 five days later: gaps of 5 and 7 days), each archive losing single
acquisitions (5 %, 4 %) and, in 40 % of seasons, every acquisition of an 8-22 day outage.
`--dates N` keeps the first N of each sensor. Same seed, same bytes. A full tile (10980²,
200 000 parcels) for one date with the defaults costs ~80 CPU-seconds, about half of it
compression (see the README).

What is modelled (one module each): `fields` (recursive cuts of the tile into convex fields
with hedges and roads, forests and villages in clusters, 5 % heterogeneous parcels),
`phenology` (double-logistic green cover per crop with per-parcel jitter; sowing, mowing,
harvest and ploughing dates), `spectra` (endmember mixing: green vegetation, residue,
flowers, soil darkened by moisture, built-up, water, shade; texture along the mixing line, its
patchiness and grain set per crop and drawn per parcel), `weather` (soil moisture from random
rain; winter snow episodes; per-date cloudiness), `snow` (patchy snow, hidden under forest),
`clouds` (fractal clouds, shadows, cirrus, undetected haze patches, saturated cloud cores and
a Sen2Cor-like SCL that misses thin cloud edges and haze), `sar` (water-cloud model over a
moist rough soil seen at each orbit's incidence, gamma speckle), `render` (one acquisition,
band by band), `writer` (COG, STAC, GeoParquet), `truth`, `preview`, `season` (orchestration).

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

`s2_dates.parquet`, one row per S2 item:

| column | type | meaning |
| --- | --- | --- |
| id, datetime | string, timestamp (UTC) | as in the item |
| platform | string | `sentinel-2a` or `sentinel-2b` |
| cloud_share | float | true share of the tile under cloud (opacity > 0) |
| eo_cloud_cover | float | % of SCL 8/9/10, as in the item |
| clear_truth | bool | whether `s2_clear/<id>/` exists |
| residual_cloud_share | float | share called clear (SCL 2, 4, 5, 6) under cloud, cirrus or haze |
| snow_share | float | true share of the tile under snow (fraction-weighted) |
| saturated_share | float | share of SCL 1 (B02 = 65535 there) |

`s1_dates.parquet`, one row per S1 item: `id`, `datetime`, `soil_moisture` (regional,
m³/m³), `orbit_state` (`ascending`/`descending`), `relative_orbit` (int), `incidence_deg`
(mean incidence over the window, degrees; it grows ~7° across a full tile towards far range),
`snow_share` (true share of the tile under snow, fraction-weighted) and `wet_snow` (bool: the
pack is melting, γ⁰ lowered by up to 5 dB in VV and 3.5 dB in VH under it; dry snow leaves γ⁰
as it is).

`s2_clear/<S2 id>/` for every date with clouds, shadows, cirrus, haze patches or snow: the same
ten bands as the item (same grids and encoding) without atmosphere, i.e. the clear-sky
(snow-covered where it snowed) reflectance to train and evaluate cloud removal (equal to the
item's bands wherever the sky is clear, up to the uniform haze: at most 0.006), plus
`SKY.tif` at 20 m, uint8, six bands: true cloud opacity (%), shadow darkening (%), cirrus
reflectance (x 1000), haze patches (blue reflectance x 1000), snow (% of the pixel), and the
residual-cloud flag (1 where the SCL calls the pixel clear while cloud, cirrus or haze ≥ 0.0025
covers it).

Crop codes: see `monitor.simulate.covers`.
"""

from monitor.simulate.covers import crop_shares
from monitor.simulate.season import SimulationSummary, plan_acquisitions, simulate_season

__all__ = ["SimulationSummary", "crop_shares", "plan_acquisitions", "simulate_season"]
