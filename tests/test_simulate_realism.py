"""The simulator against reality: its numbers fall where the real samples' numbers fall.

Real samples: Mol (Belgium, tile 31UFS) Sentinel-2 L2A and Sentinel-1 γ⁰ of April 2023, and the
Slovenian 2015-2017 NDVI/cloud-mask series. The simulated window is the same month on the same
tile. Tolerances are set from the spread of the real samples themselves (the two clear Mol dates
ten days apart, the ten S1 dates) and are stated at each assertion.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio

from monitor.simulate import SimulationSummary, plan_acquisitions, simulate_season
from monitor.simulate.grid import TileGrid


def _samples() -> Path:
    bundled = Path(__file__).parents[1] / "examples"
    return (
        bundled
        if (bundled / "mol-2023").is_dir()
        else Path(__file__).parents[2] / "shared" / "data"
    )


SAMPLES = _samples()
MOL = SAMPLES / "mol-2023"
CLEAR_MOL = ("S2_31UFS_20230405_L2A", "S2_31UFS_20230415_L2A")


def _read(path: Path, band: int = 1) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(band)


@pytest.fixture(scope="module")
def april(tmp_path_factory: pytest.TempPathFactory) -> SimulationSummary:
    out = tmp_path_factory.mktemp("april")
    return simulate_season(
        out, 256, 60, 2023, 11, start=date(2023, 3, 25), end=date(2023, 5, 5), clear_truth=False
    )


def _percentiles(values: np.ndarray) -> np.ndarray:
    return np.percentile(values, [5, 50, 95])


def _real_vegetation() -> dict[str, np.ndarray]:
    pooled: dict[str, list[np.ndarray]] = {"NDVI": [], "B04": [], "B08": [], "B11": []}
    for item in CLEAR_MOL:
        folder = MOL / "s2" / item
        veg = _read(folder / "SCL.tif") == 4
        red, nir, swir = (_read(folder / f"{b}.tif")[veg] / 1e4 for b in ("B04", "B08", "B11"))
        pooled["NDVI"].append((nir - red) / (nir + red))
        pooled["B04"].append(red)
        pooled["B08"].append(nir)
        pooled["B11"].append(swir)
    return {k: np.concatenate(v) for k, v in pooled.items()}


def _sim_grassland(april: SimulationSummary) -> dict[str, np.ndarray]:
    """Grassland pixels (Mol's fields are nearly all grass in April) classed vegetation on the
    simulated dates with at most 5 % of cloud, 25 March to 5 May."""
    units = _read(april.out / "truth" / "units.tif")
    covers = np.array(
        pq.read_table(april.out / "truth" / "units.parquet").column("cover").to_pylist()
    )
    grass = np.isin(covers[units], ("PPH", "PRL"))
    pooled: dict[str, list[np.ndarray]] = {"NDVI": [], "B04": [], "B08": [], "B11": []}
    for row in pq.read_table(april.out / "truth" / "s2_dates.parquet").to_pylist():
        if row["cloud_share"] > 0.05:
            continue
        folder = april.out / "s2" / row["id"]
        veg20 = _read(folder / "SCL.tif") == 4
        veg = np.repeat(np.repeat(veg20, 2, 0), 2, 1) & grass
        red, nir = (_read(folder / f"{b}.tif")[veg] / 1e4 for b in ("B04", "B08"))
        pooled["NDVI"].append((nir - red) / (nir + red))
        pooled["B04"].append(red)
        pooled["B08"].append(nir)
        pooled["B11"].append(_read(folder / "B11.tif")[veg20 & grass[::2, ::2]] / 1e4)
    assert pooled["NDVI"], "the simulated spring has at least one clear date"
    return {k: np.concatenate(v) for k, v in pooled.items()}


def test_vegetation_reflectance_matches_the_clear_mol_dates(april: SimulationSummary) -> None:
    real, sim = _real_vegetation(), _sim_grassland(april)
    r, s = _percentiles(real["NDVI"]), _percentiles(sim["NDVI"])
    # median NDVI of the two real dates differ by 0.01; a spring green-up's per-field jitter
    # allows a few hundredths more
    assert abs(s[1] - r[1]) <= 0.05, (r, s)
    assert abs(s[2] - r[2]) <= 0.04, (r, s)
    assert s[0] >= r[0] - 0.12, (r, s)  # SCL 4 starts at the same NDVI threshold (≈0.55-0.6)
    for band, tolerance in (("B04", 0.35), ("B08", 0.15), ("B11", 0.2)):
        real_median, sim_median = np.median(real[band]), np.median(sim[band])
        # relative tolerance: red is tiny (~0.03) so 35 % is ~0.01 reflectance
        assert abs(sim_median / real_median - 1) <= tolerance, (band, real_median, sim_median)


def _real_s1() -> dict[str, np.ndarray]:
    out = {}
    for pol in ("VV", "VH"):
        values = [_read(p / f"{pol}.tif").ravel() for p in sorted((MOL / "s1").iterdir())]
        stack = np.concatenate(values)
        out[pol] = stack[np.isfinite(stack)]
    return out


def test_backscatter_matches_the_mol_sentinel1_dates(april: SimulationSummary) -> None:
    units = _read(april.out / "truth" / "units.tif")
    covers = np.array(
        pq.read_table(april.out / "truth" / "units.parquet").column("cover").to_pylist()
    )
    fields = ~np.isin(covers[units], ("FOR", "URB", "EAU", "MRG"))  # Mol's window is farmland
    real = _real_s1()
    for pol in ("VV", "VH"):
        sim = np.concatenate(
            [
                _read(item.parent / f"{pol}.tif")[fields]
                for item in april.s1_items
                if "202304" in item.parent.name
            ]
        )
        r, s = _percentiles(real[pol]), _percentiles(sim)
        # the real medians move by 2.2 dB (VV) and 1.8 dB (VH) across the ten Mol dates
        assert abs(s[1] - r[1]) <= 1.5, (pol, r, s)
        # 5 %-95 % spread (speckle + field-to-field): real 8-10 dB
        assert abs((s[2] - s[0]) - (r[2] - r[0])) <= 3.0, (pol, r, s)


def test_within_field_speckle_matches_mol(april: SimulationSummary) -> None:
    import pyogrio.raw
    import shapely
    from rasterio.features import rasterize

    _, _, wkb, _ = pyogrio.raw.read(MOL / "segments.gpkg")[:4]
    item = sorted((MOL / "s1").iterdir())[0]
    with rasterio.open(item / "VV.tif") as src:
        segments = rasterize(
            ((g, i + 1) for i, g in enumerate(shapely.from_wkb(wkb))),
            out_shape=src.shape,
            transform=src.transform,
        )
    real_std = []
    for folder in sorted((MOL / "s1").iterdir()):
        vv = _read(folder / "VV.tif")
        real_std += [
            np.nanstd(vv[segments == i])
            for i in range(1, segments.max() + 1)
            if (segments == i).sum() > 30
        ]
    units = _read(april.out / "truth" / "units.tif")
    parcel = np.array(
        [
            p is not None
            for p in pq.read_table(april.out / "truth" / "units.parquet")
            .column("id_parcel")
            .to_pylist()
        ]
    )
    sim_std = []
    for item in april.s1_items:
        vv = _read(item.parent / "VV.tif")
        sim_std += [vv[units == u].std() for u in np.flatnonzero(parcel) if (units == u).sum() > 30]
    # real within-field spread: median 2.0 dB (ENL ≈ 5 after the 20→10 m resampling)
    assert abs(np.median(sim_std) - np.median(real_std)) <= 0.5, (
        np.median(real_std),
        np.median(sim_std),
    )


def test_cloudy_dates_have_the_real_scl_mix(april: SimulationSummary) -> None:
    real_cloud_b04 = []
    for folder in sorted((MOL / "s2").iterdir()):
        scl = _read(folder / "SCL.tif")
        cloudy = np.isin(scl, (8, 9, 10)).mean()
        if cloudy > 0.5:
            # real overcast dates are cloud classes almost everywhere
            assert np.bincount(scl.ravel(), minlength=12)[8:11].sum() / scl.size > 0.95
        if (scl == 9).mean() > 0.5:
            real_cloud_b04.append(np.median(_read(folder / "B04.tif")[scl == 9]) / 1e4)
    sim_cloud_b04 = []
    overcast = 0
    for row in pq.read_table(april.out / "truth" / "s2_dates.parquet").to_pylist():
        scl = _read(april.out / "s2" / row["id"] / "SCL.tif")
        if row["cloud_share"] > 0.97:
            overcast += 1
            counts = np.bincount(scl.ravel(), minlength=12)
            # as on the real dates: the cloud classes cover nearly the whole overcast scene,
            # with a little room for shadows cast into gaps of the deck
            assert counts[8:11].sum() / scl.size > 0.9, counts
        if (scl == 9).mean() > 0.5:
            b04 = _read(april.out / "s2" / row["id"] / "B04.tif")[::2, ::2][scl == 9]
            sim_cloud_b04.append(np.median(b04) / 1e4)
    assert overcast >= 2
    assert sim_cloud_b04
    # thick clouds as bright as the real ones (real medians: 0.66-1.08)
    assert min(real_cloud_b04) - 0.25 <= np.median(sim_cloud_b04) <= max(real_cloud_b04) + 0.1


def _real_cloud_shares() -> tuple[float, float]:
    """Share of overcast dates: (Slovenia 2015-2017, 68 dates; Mol April 2023, 12 dates)."""
    slovenia = []
    for path in sorted((SAMPLES / "slovenia-2015-2017" / "ndvi").glob("*.tif")):
        clm = _read(path, 3)
        slovenia.append((clm == 1).mean() > 0.9)
    mol = [
        np.isin(_read(f / "SCL.tif"), (8, 9, 10)).mean() > 0.9
        for f in sorted((MOL / "s2").iterdir())
    ]
    return float(np.mean(slovenia)), float(np.mean(mol))


def test_overcast_frequency_lies_between_the_real_series() -> None:
    slovenia, mol = _real_cloud_shares()
    grid = TileGrid(256)
    covers = [
        p.cloud_cover
        for seed in range(20)
        for p in plan_acquisitions(grid, date(2023, 3, 1), date(2023, 10, 31), seed, False, None)
    ]
    overcast = float(np.mean(np.array(covers) > 0.95))
    # Slovenia (sunnier, 3 years) ≈ 0.3, Mol (a wet April) ≈ 0.8: a Belgian season lies between
    assert slovenia - 0.05 <= overcast <= mol, (slovenia, overcast, mol)
    clear = float(np.mean(np.array(covers) < 0.05))
    assert 0.1 <= clear <= 0.5


def _per_field_ndvi_std(ndvi: np.ndarray, fields: np.ndarray, valid: np.ndarray) -> list[float]:
    return [
        float(ndvi[(fields == f) & valid].std())
        for f in np.unique(fields[valid])
        if f > 0 and ((fields == f) & valid).sum() > 30
    ]


def test_within_field_texture_varies_from_field_to_field_as_in_mol(
    april: SimulationSummary,
) -> None:
    import pyogrio.raw
    import shapely
    from rasterio.features import rasterize

    _, _, wkb, _ = pyogrio.raw.read(MOL / "segments.gpkg")[:4]
    real: list[float] = []
    for item in CLEAR_MOL:
        folder = MOL / "s2" / item
        with rasterio.open(folder / "B04.tif") as src:
            segments = rasterize(
                ((g, i + 1) for i, g in enumerate(shapely.from_wkb(wkb))),
                out_shape=src.shape,
                transform=src.transform,
            )
        red, nir = (_read(folder / f"{b}.tif") / 1e4 for b in ("B04", "B08"))
        real += _per_field_ndvi_std(
            (nir - red) / (nir + red), segments, _read(folder / "SCL.tif") == 4
        )
    units = _read(april.out / "truth" / "units.tif")
    declared = np.array(
        [
            p is not None
            for p in pq.read_table(april.out / "truth" / "units.parquet")
            .column("id_parcel")
            .to_pylist()
        ]
    )
    fields = np.where(declared[units], units, 0)
    sim: list[float] = []
    for row in pq.read_table(april.out / "truth" / "s2_dates.parquet").to_pylist():
        if row["cloud_share"] > 0.05:
            continue
        folder = april.out / "s2" / row["id"]
        veg = np.repeat(np.repeat(_read(folder / "SCL.tif") == 4, 2, 0), 2, 1)
        red, nir = (_read(folder / f"{b}.tif") / 1e4 for b in ("B04", "B08"))
        sim += _per_field_ndvi_std((nir - red) / (nir + red), fields, veg)
    deciles = [10, 50, 90]
    r, s = np.percentile(real, deciles), np.percentile(sim, deciles)
    slovenia = np.percentile(_slovenia_field_ndvi_std(), deciles)
    # real: Mol segments (delineated from the image, so even) 0.010/0.025/0.077; Slovenian
    # grassland and cropland polygons in full leaf 0.027/0.051/0.085. The simulated Belgian
    # fields sit with Mol, within the band the two real samples span
    assert r[1] / 1.5 <= s[1] <= slovenia[1], (r, s, slovenia)
    assert 0.6 * r[2] <= s[2] <= 1.2 * slovenia[2], (r, s, slovenia)
    assert r[0] / 2 <= s[0] <= slovenia[0], (r, s, slovenia)
    # fields differ from one another: the 90th/10th ratio (Mol ≈ 8, Slovenia ≈ 3; one texture
    # for every field gave ≈ 1.3)
    assert s[2] / s[0] >= 0.8 * slovenia[2] / slovenia[0], (r, s, slovenia)


def _slovenia_field_ndvi_std() -> list[float]:
    """Within-polygon NDVI spread of the real Slovenian grassland and cropland polygons on
    their cloud-free dates in full leaf (median NDVI > 0.6, comparable to April grass)."""
    import pyogrio.raw
    import shapely
    from rasterio.features import rasterize

    folder = SAMPLES / "slovenia-2015-2017"
    meta, _, wkb, columns = pyogrio.raw.read(folder / "land_use_parcels.gpkg")[:4]
    use = columns[list(meta["fields"]).index("LULC_NAME")]
    paths = sorted((folder / "ndvi").glob("*.tif"))
    with rasterio.open(paths[0]) as src:
        polygons = rasterize(
            ((g, i + 1) for i, g in enumerate(shapely.from_wkb(wkb))),
            out_shape=src.shape,
            transform=src.transform,
        )
    farmed = [i + 1 for i, u in enumerate(use) if u in ("grassland", "cultivated land")]
    out: list[float] = []
    for path in paths:
        ndvi, clear = _read(path, 1), _read(path, 3) == 0
        for i in farmed:
            inside = polygons == i
            if inside.sum() > 30 and clear[inside].all() and np.median(ndvi[inside]) > 0.6:
                out.append(float(ndvi[inside].std()))
    return out


def _real_phases() -> list[int]:
    """Day in the 12-day cycle of each real Mol S1 date (the first date is day 0)."""
    days = [int(p.name[-2:]) for p in sorted((MOL / "s1").iterdir())]
    return [(d - days[0]) % 12 for d in days]


def test_orbit_offsets_stay_within_what_the_real_stack_shows(april: SimulationSummary) -> None:
    # the Mol S1 dates come from four relative orbits on a 12-day cycle: group them by their
    # phase in the cycle; the groups' mean medians differ by at most ~0.6 (VV) and ~1 dB (VH)
    real_dates = sorted((MOL / "s1").iterdir())
    dates = pq.read_table(april.out / "truth" / "s1_dates.parquet").to_pylist()
    assert {d["orbit_state"] for d in dates} == {"ascending", "descending"}
    assert len({d["relative_orbit"] for d in dates}) == len(set(_real_phases())) == 4
    for pol in ("VV", "VH"):
        groups: dict[int, list[float]] = {}
        for folder, phase in zip(real_dates, _real_phases(), strict=True):
            groups.setdefault(phase, []).append(np.nanmedian(_read(folder / f"{pol}.tif")))
        means = [np.mean(v) for v in groups.values()]
        real_spread = max(means) - min(means)
        by_orbit: dict[int, list[float]] = {}
        for d in dates:
            values = _read(april.out / "s1" / d["id"] / f"{pol}.tif")
            by_orbit.setdefault(d["relative_orbit"], []).append(float(np.median(values)))
        sim_means = [np.mean(v) for v in by_orbit.values()]
        sim_spread = max(sim_means) - min(sim_means)
        # the orbits' geometries are visible, but no more than in the real stack
        assert 0.1 <= sim_spread <= real_spread + 0.5, (pol, real_spread, sim_spread)


def test_revisits_follow_real_orbit_cycles() -> None:
    # Antwerp's S2 series: one track, every 5 days; Mol's S1 series: each orbit every 12 days
    antwerp = sorted(
        datetime.strptime(p.name[9:17], "%Y%m%d")
        for p in (SAMPLES / "antwerp-2023q4" / "s2").iterdir()
    )
    real_s2_gaps = {(b - a).days for a, b in itertools.pairwise(antwerp)}
    assert real_s2_gaps == {5}
    mol_s1 = [int(p.name[-2:]) for p in sorted((MOL / "s1").iterdir())]
    assert any(b - a == 12 for a in mol_s1 for b in mol_s1)
    grid = TileGrid(256)
    s2_gaps, s1_gaps, cycle_days = [], [], set()
    for seed in range(20):
        plans = plan_acquisitions(grid, date(2023, 3, 1), date(2023, 10, 31), seed, True, None)
        for sensor, gaps in (("S2", s2_gaps), ("S1", s1_gaps)):
            days = [p.day for p in plans if p.sensor == sensor]
            gaps += [(b - a).days for a, b in itertools.pairwise(days)]
        cycle_days |= {p.orbit.cycle_day for p in plans if p.orbit is not None}
    assert all(g % 5 == 0 for g in s2_gaps)
    assert np.mean(np.array(s2_gaps) == 5) >= 0.8  # mostly regular ...
    assert max(s2_gaps) >= 15  # ... with missing acquisitions and outages, as real archives
    # the real Mol stack: days 0, 2, 5 and 9 of the cycle, gaps of 2, 3, 4 and 3 days
    phases = sorted(set(_real_phases()))
    assert cycle_days == set(phases)
    real_gaps = {b - a for a, b in itertools.pairwise(phases)} | {12 + phases[0] - phases[-1]}
    assert real_gaps <= set(s1_gaps)
    assert all(g in real_gaps or g >= min(real_gaps) + 2 for g in s1_gaps)
