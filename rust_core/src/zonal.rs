//! Zonal statistics: one pass over all bands of an acquisition, parcel by parcel, through the
//! label raster's CSR index (the bands are borrowed, never copied or stacked).
//!
//! Definitions (the Python facade `monitor.kernels.zonal_statistics` repeats them):
//! * `pixel_count`: member pixels of the parcel (pixel-centre rule).
//! * valid pixel: a member that is `true` in the valid mask (when one is given) and is not nodata
//!   in any band of the call (NaN, or equal to that band's nodata value). One definition for all
//!   bands so every statistic of a row describes the same pixels.
//! * per output (each band, then NDVI when asked): `mean`, `std` (population, ddof = 0), `min`,
//!   `max`, `p10`, `p50`, `p90` (numpy's default linear interpolation) over the valid pixels, in
//!   scaled units `raw * scale + offset`; NaN when the parcel has no valid pixel. They are
//!   computed on the raw values and scaled at the end (`scale > 0`, so the order is kept);
//!   percentiles of integer bands come from a radix histogram, of float bands from selection.
//! * NDVI = (nir - red) / (nir + red) on scaled values, per valid pixel; pixels with
//!   `nir + red <= 0` are left out of the NDVI statistics only.
//! * `wmean` (optional): sum(f * v) / sum(f) over the cells the polygon covers (exact fractions
//!   `f` from the label raster) that are valid by the same rule; exactextract's `mean` when
//!   nothing is masked.

use std::sync::atomic::AtomicBool;

use rayon::prelude::*;

use crate::kernel_error::{check_cancel, input_error, KernelError};
use crate::label::LabelRaster;
use crate::raster_value::Band;

/// Statistic names, in the order of each output's columns (`wmean` follows when asked).
pub const STATS: [&str; 7] = ["mean", "std", "min", "max", "p10", "p50", "p90"];

/// Percentiles reported, matching `STATS[4..]`.
const PERCENTILES: [f64; 3] = [10.0, 50.0, 90.0];

/// Parcels per unit of parallel work (the cancellation flag is polled before each parcel).
const PARCELS_PER_CHUNK: usize = 512;

/// What to compute besides the per-band statistics.
#[derive(Clone, Copy, Debug, Default)]
pub struct ZonalOptions {
    /// `(red, nir)` band indices: add NDVI statistics as the last output.
    pub ndvi: Option<(usize, usize)>,
    /// Add the coverage-weighted mean (`wmean`) to each output; needs coverage fractions.
    pub weighted_mean: bool,
}

impl ZonalOptions {
    /// Number of statistics per output (7, or 8 with `wmean`).
    pub fn stats_per_output(&self) -> usize {
        STATS.len() + usize::from(self.weighted_mean)
    }
}

/// Result of a zonal pass.
#[derive(Clone, Debug, PartialEq)]
pub struct ZonalStats {
    pub pixel_count: Vec<u32>,
    pub valid_count: Vec<u32>,
    /// Row-major `[n_parcels, n_columns]`; output `o`'s statistic `s` is column
    /// `o * stats_per_output + s`.
    pub values: Vec<f64>,
    pub n_columns: usize,
}

/// Per-thread scratch buffers, reused from parcel to parcel.
#[derive(Default)]
struct Scratch {
    keep: Vec<bool>,
    members: Vec<u32>,
    ints: Vec<i32>,
    values: Vec<f64>,
    red: Vec<f64>,
    nir: Vec<f64>,
    cover_pos: Vec<u32>,
}

/// Runs the zonal pass. `valid`, when given, is a row-major mask of the label raster's grid.
pub fn zonal_statistics(
    labels: &LabelRaster,
    bands: &[Band<'_>],
    valid: Option<&[bool]>,
    options: &ZonalOptions,
    cancel: &AtomicBool,
) -> Result<ZonalStats, KernelError> {
    check_inputs(labels, bands, valid)?;
    if let Some((red, nir)) = options.ndvi {
        if red >= bands.len() || nir >= bands.len() || red == nir {
            return Err(input_error(format!(
                "NDVI bands ({red}, {nir}) must be two different bands among {}",
                bands.len()
            )));
        }
    }
    if options.weighted_mean && labels.n_parcels > 0 && !labels.has_coverage() {
        return Err(input_error(
            "weighted mean needs a label raster built with coverage fractions",
        ));
    }
    let n = labels.n_parcels;
    let k = options.stats_per_output();
    let n_outputs = bands.len() + usize::from(options.ndvi.is_some());
    let n_columns = n_outputs * k;

    let pixel_count: Vec<u32> = labels
        .offsets
        .windows(2)
        .map(|w| (w[1] - w[0]) as u32)
        .collect();
    let mut valid_count = vec![0u32; n];
    let mut values = vec![f64::NAN; n * n_columns];
    if n_columns == 0 {
        // No band at all: only the counts are asked for (and par_chunks_mut needs a size > 0).
        let mut scratch = Scratch::default();
        for (p, count) in valid_count.iter_mut().enumerate() {
            valid_members(
                labels,
                p,
                bands,
                valid,
                &mut scratch.keep,
                &mut scratch.members,
            );
            *count = scratch.members.len() as u32;
        }
    } else {
        values
            .par_chunks_mut(PARCELS_PER_CHUNK * n_columns)
            .zip(valid_count.par_chunks_mut(PARCELS_PER_CHUNK))
            .enumerate()
            .try_for_each_init(Scratch::default, |scratch, (chunk, (rows, counts))| {
                let first = chunk * PARCELS_PER_CHUNK;
                for (i, (row, count)) in rows.chunks_mut(n_columns).zip(counts).enumerate() {
                    check_cancel(cancel)?;
                    *count = parcel_row(labels, first + i, bands, valid, options, scratch, row);
                }
                Ok::<(), KernelError>(())
            })?;
    }
    Ok(ZonalStats {
        pixel_count,
        valid_count,
        values,
        n_columns,
    })
}

/// Checks the shapes shared by the zonal and pixel-set kernels.
pub(crate) fn check_inputs(
    labels: &LabelRaster,
    bands: &[Band<'_>],
    valid: Option<&[bool]>,
) -> Result<(), KernelError> {
    let len = labels.grid.len();
    crate::raster_value::check_bands(bands, len)?;
    if let Some(mask) = valid {
        if mask.len() != len {
            return Err(input_error(format!(
                "valid mask has {} pixels, the label raster has {len}",
                mask.len()
            )));
        }
    }
    Ok(())
}

/// Fills `out` with parcel `p`'s valid member pixels (ascending row-major indices); `keep` is
/// scratch space.
pub(crate) fn valid_members(
    labels: &LabelRaster,
    p: usize,
    bands: &[Band<'_>],
    valid: Option<&[bool]>,
    keep: &mut Vec<bool>,
    out: &mut Vec<u32>,
) {
    let members = labels.parcel_pixels(p);
    keep.clear();
    match valid {
        Some(mask) => keep.extend(members.iter().map(|&i| mask[i as usize])),
        None => keep.resize(members.len(), true),
    }
    // One flag per member, cleared band by band, then one compaction: cheaper than filtering
    // the list once per band.
    for band in bands {
        band.mark_nodata(members, keep);
    }
    out.clear();
    out.extend(
        members
            .iter()
            .zip(keep.iter())
            .filter(|(_, &k)| k)
            .map(|(&i, _)| i),
    );
}

/// Computes parcel `p`'s row of statistics; returns its valid pixel count.
fn parcel_row(
    labels: &LabelRaster,
    p: usize,
    bands: &[Band<'_>],
    valid: Option<&[bool]>,
    options: &ZonalOptions,
    s: &mut Scratch,
    row: &mut [f64],
) -> u32 {
    valid_members(labels, p, bands, valid, &mut s.keep, &mut s.members);
    let k = options.stats_per_output();
    for (b, band) in bands.iter().enumerate() {
        let out = &mut row[b * k..b * k + STATS.len()];
        // Statistics on raw values, scaled at the end (scale > 0 keeps the order); integer
        // bands are selected on as i32, cheaper than f64.
        if band.gather_int(&s.members, &mut s.ints) {
            describe(&mut s.ints, band.scale, band.offset, out);
        } else {
            band.gather_raw(&s.members, &mut s.values);
            describe(&mut s.values, band.scale, band.offset, out);
        }
    }
    if let Some((red, nir)) = options.ndvi {
        bands[red].gather_scaled(&s.members, &mut s.red);
        bands[nir].gather_scaled(&s.members, &mut s.nir);
        ndvi_values(&s.red, &s.nir, &mut s.values);
        let o = bands.len() * k;
        describe(&mut s.values, 1.0, 0.0, &mut row[o..o + STATS.len()]);
    }
    if options.weighted_mean {
        weighted_means(labels, p, bands, valid, options, s, row);
    }
    s.members.len() as u32
}

/// NDVI of each pixel where `nir + red > 0`.
fn ndvi_values(red: &[f64], nir: &[f64], out: &mut Vec<f64>) {
    out.clear();
    out.extend(
        red.iter()
            .zip(nir)
            .filter(|(&r, &n)| n + r > 0.0)
            .map(|(&r, &n)| (n - r) / (n + r)),
    );
}

/// Writes the `wmean` column of every output for parcel `p`.
fn weighted_means(
    labels: &LabelRaster,
    p: usize,
    bands: &[Band<'_>],
    valid: Option<&[bool]>,
    options: &ZonalOptions,
    s: &mut Scratch,
    row: &mut [f64],
) {
    let k = options.stats_per_output();
    let (cells, fractions) = labels.parcel_coverage(p);
    // Positions (into this parcel's coverage list) of the valid cells.
    s.cover_pos.clear();
    s.cover_pos.extend((0..cells.len() as u32).filter(|&j| {
        let cell = cells[j as usize] as usize;
        valid.is_none_or(|m| m[cell]) && bands.iter().all(|b| b.has_data_at(cell))
    }));
    let weight: f64 = s.cover_pos.iter().map(|&j| fractions[j as usize]).sum();
    let scaled = |band: &Band<'_>, j: u32| band.scaled_at(cells[j as usize] as usize);
    for (b, band) in bands.iter().enumerate() {
        let total: f64 = s
            .cover_pos
            .iter()
            .map(|&j| fractions[j as usize] * scaled(band, j))
            .sum();
        row[b * k + STATS.len()] = total / weight; // NaN when no valid cell (0 / 0)
    }
    if let Some((red, nir)) = options.ndvi {
        let (mut total, mut ndvi_weight) = (0.0, 0.0);
        for &j in &s.cover_pos {
            let (r, n) = (scaled(&bands[red], j), scaled(&bands[nir], j));
            if n + r > 0.0 {
                let f = fractions[j as usize];
                total += f * (n - r) / (n + r);
                ndvi_weight += f;
            }
        }
        row[bands.len() * k + STATS.len()] = total / ndvi_weight;
    }
}

/// A value the statistics are computed on: raw integers (exact) or floats without NaN.
pub trait Sample: Copy + PartialOrd {
    fn to_f64(self) -> f64;

    /// Writes the order statistics `ranks` (ascending, distinct) of `values`, whose extremes
    /// are `min` and `max`, into `out`; may reorder `values`.
    fn order_statistics(
        values: &mut [Self],
        min: Self,
        max: Self,
        ranks: &[usize],
        out: &mut [f64],
    ) {
        let _ = (min, max);
        select_order_statistics(values, ranks, out);
    }
}

impl Sample for i32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }

    fn order_statistics(
        values: &mut [Self],
        min: Self,
        max: Self,
        ranks: &[usize],
        out: &mut [f64],
    ) {
        // Below this size the histograms cost more than selecting.
        const RADIX_MIN_LEN: usize = 48;
        let range = i64::from(max) - i64::from(min);
        if values.len() < RADIX_MIN_LEN || range >= 1 << 16 {
            select_order_statistics(values, ranks, out);
        } else {
            radix_order_statistics(values, min, range as u32, ranks, out);
        }
    }
}

impl Sample for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}

/// Order statistics by successive selections: everything after a selected rank is >= it, so
/// the next (larger) rank is searched for only in that part.
fn select_order_statistics<T: Sample>(values: &mut [T], ranks: &[usize], out: &mut [f64]) {
    let mut start = 0;
    for (o, &r) in out.iter_mut().zip(ranks) {
        values[start..].select_nth_unstable_by(r - start, |a, b| {
            a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal)
        });
        start = r + 1;
        *o = values[r].to_f64();
    }
}

/// Order statistics of integers spanning less than 2^16 by a two-level radix histogram: one
/// pass over the values counts their high bits, a second one the low bits inside the few
/// high-bit buckets that hold a wanted rank. O(n), no data movement, no branches to mispredict.
fn radix_order_statistics(values: &[i32], min: i32, range: u32, ranks: &[usize], out: &mut [f64]) {
    const MAX_RANKS: usize = 8;
    assert!(
        ranks.len() <= MAX_RANKS,
        "at most {MAX_RANKS} order statistics at once"
    );
    let bits = u32::BITS - range.leading_zeros(); // <= 16
    let low_bits = bits / 2;
    let low_mask = (1u32 << low_bits) - 1;
    let offset = |v: i32| (v - min) as u32;

    let mut high = [0u32; 256];
    for &v in values {
        high[(offset(v) >> low_bits) as usize] += 1;
    }
    // Bucket of each rank and the rank inside it; one slot per distinct bucket.
    const NO_SLOT: u8 = u8::MAX;
    let mut slot_of = [NO_SLOT; 256];
    let mut slot_bucket = [0u32; MAX_RANKS];
    let mut n_slots = 0;
    let mut wanted = [(0usize, 0u32); MAX_RANKS]; // (slot, rank inside the bucket)
    let (mut bucket, mut below) = (0usize, 0u32);
    for (w, &r) in wanted.iter_mut().zip(ranks) {
        while below + high[bucket] <= r as u32 {
            below += high[bucket];
            bucket += 1;
        }
        if slot_of[bucket] == NO_SLOT {
            slot_of[bucket] = n_slots as u8;
            slot_bucket[n_slots] = bucket as u32;
            n_slots += 1;
        }
        *w = (slot_of[bucket] as usize, r as u32 - below);
    }
    let mut low = [[0u32; 256]; MAX_RANKS];
    for &v in values {
        let u = offset(v);
        let slot = slot_of[(u >> low_bits) as usize];
        if slot != NO_SLOT {
            low[slot as usize][(u & low_mask) as usize] += 1;
        }
    }
    // Ranks are ascending, so each slot's scan goes on from where its previous rank stopped.
    let mut cursor = [(0usize, 0u32); MAX_RANKS]; // (value, count below it) per slot
    for (o, &(slot, r)) in out.iter_mut().zip(&wanted[..ranks.len()]) {
        let (mut value, mut below) = cursor[slot];
        while below + low[slot][value] <= r {
            below += low[slot][value];
            value += 1;
        }
        cursor[slot] = (value, below);
        let u = (slot_bucket[slot] << low_bits) | value as u32;
        *o = f64::from(min) + f64::from(u);
    }
}

/// Writes mean, std (ddof 0), min, max, p10, p50, p90 of `values * scale + offset` into
/// `out[..7]` (`scale > 0`); NaN when empty. Reorders `values` (selection for percentiles).
pub fn describe<T: Sample>(values: &mut [T], scale: f64, offset: f64, out: &mut [f64]) {
    let n = values.len();
    if n == 0 {
        out.fill(f64::NAN);
        return;
    }
    let (mut sum, mut min, mut max) = (0.0, values[0], values[0]);
    for &v in values.iter() {
        sum += v.to_f64();
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let mean = sum / n as f64;
    // Two-pass variance: stable where sum-of-squares would cancel.
    let var = values
        .iter()
        .map(|&v| (v.to_f64() - mean) * (v.to_f64() - mean))
        .sum::<f64>()
        / n as f64;
    out[0] = mean;
    out[1] = var.sqrt();
    out[2] = min.to_f64();
    out[3] = max.to_f64();
    percentiles(
        values,
        min,
        max,
        &PERCENTILES,
        &mut out[4..4 + PERCENTILES.len()],
    );
    if scale != 1.0 || offset != 0.0 {
        for (i, o) in out[..4 + PERCENTILES.len()].iter_mut().enumerate() {
            // The standard deviation only scales.
            *o = if i == 1 {
                *o * scale
            } else {
                *o * scale + offset
            };
        }
    }
}

/// Percentiles `qs` (ascending, in 0..=100, at most 4) of non-empty `values` with numpy's
/// default (`method="linear"`) interpolation, from order statistics instead of a full sort.
/// `min` and `max` are the extremes of `values`.
pub fn percentiles<T: Sample>(values: &mut [T], min: T, max: T, qs: &[f64], out: &mut [f64]) {
    let n = values.len();
    assert!(qs.len() <= 4, "at most 4 percentiles at once");
    // numpy: virtual index (n - 1) * q / 100, between order statistics lo and lo + 1.
    let mut positions = [(0usize, 0usize, 0f64); 4];
    let mut ranks = [0usize; 8];
    for (k, &q) in qs.iter().enumerate() {
        let virtual_index = (n - 1) as f64 * (q / 100.0);
        let lo = (virtual_index.floor() as usize).min(n - 1);
        let hi = (lo + 1).min(n - 1);
        positions[k] = (lo, hi, virtual_index - lo as f64);
        ranks[2 * k] = lo;
        ranks[2 * k + 1] = hi;
    }
    let ranks = &mut ranks[..2 * qs.len()];
    ranks.sort_unstable();
    let mut distinct = [0usize; 8];
    let mut m = 0;
    for &r in ranks.iter() {
        if m == 0 || distinct[m - 1] != r {
            distinct[m] = r;
            m += 1;
        }
    }
    let mut stats = [0f64; 8];
    T::order_statistics(values, min, max, &distinct[..m], &mut stats[..m]);
    let at = |r: usize| stats[distinct[..m].partition_point(|&d| d < r)];
    for (o, &(lo, hi, t)) in out.iter_mut().zip(&positions[..qs.len()]) {
        *o = lerp(at(lo), at(hi), t);
    }
}

/// numpy's `_lerp`: interpolates from the nearer end so that t = 1 gives exactly `b`.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;
    use crate::raster_value::BandData;

    fn raster(h: usize, w: usize, labels: Vec<u32>, n: usize) -> LabelRaster {
        LabelRaster::from_labels(Grid::new(h, w, [1.0, 0.0, 0.0, 0.0, -1.0, 0.0]), n, labels)
    }

    #[test]
    fn percentiles_match_numpy_linear() {
        // np.percentile([7, 1, 3, 5, 9], [10, 50, 90]) == [1.8, 5.0, 8.2]
        let mut v = vec![7.0, 1.0, 3.0, 5.0, 9.0];
        let mut out = [0.0; 3];
        percentiles(&mut v, 1.0, 9.0, &PERCENTILES, &mut out);
        let expected = [1.8, 5.0, 8.2];
        for (o, e) in out.iter().zip(expected) {
            assert!((o - e).abs() < 1e-12, "{out:?}");
        }
        let mut one = vec![4.0];
        percentiles(&mut one, 4.0, 4.0, &PERCENTILES, &mut out);
        assert_eq!(out, [4.0; 3]);
    }

    #[test]
    fn percentiles_match_a_full_sort_with_ties() {
        let mut state = 17u64;
        for n in 1..120 {
            let mut v: Vec<f64> = (0..n)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((state >> 40) % 13) as f64
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let mut out = [0.0; 4];
            let qs = [10.0, 12.0, 50.0, 90.0];
            percentiles(&mut v, sorted[0], sorted[n - 1], &qs, &mut out);
            for (o, q) in out.iter().zip(qs) {
                let vi = (n - 1) as f64 * (q / 100.0);
                let lo = vi.floor() as usize;
                let hi = (lo + 1).min(n - 1);
                let e = lerp(sorted[lo], sorted[hi], vi - lo as f64);
                assert_eq!(*o, e, "n={n} q={q}");
            }
        }
    }

    #[test]
    fn radix_and_selection_agree_on_integers() {
        let mut state = 5u64;
        for (n, spread) in [(48, 3), (200, 1000), (1000, 65535), (500, 1), (300, 70000)] {
            let v: Vec<i32> = (0..n)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((state >> 33) % spread) as i32 - 300
                })
                .collect();
            let ranks = [0, 1, n / 10, n / 2, n / 2 + 1, n - 1];
            let (mut a, mut b) = ([0.0; 6], [0.0; 6]);
            let (lo, hi) = (*v.iter().min().unwrap(), *v.iter().max().unwrap());
            i32::order_statistics(&mut v.clone(), lo, hi, &ranks, &mut a);
            select_order_statistics(&mut v.clone(), &ranks, &mut b);
            assert_eq!(a, b, "n={n} spread={spread}");
        }
    }

    #[test]
    fn describe_small_set() {
        let mut v = vec![2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let mut out = [0.0; 7];
        describe(&mut v, 1.0, 0.0, &mut out);
        assert_eq!(&out[..4], &[5.0, 2.0, 2.0, 9.0]);
    }

    #[test]
    fn validity_mask_nodata_and_ndvi() {
        // 2x3 grid, parcel 0 = pixels 0,1,2; parcel 1 = pixel 3; pixel 4,5 outside.
        let lr = raster(2, 3, vec![1, 1, 1, 2, 0, 0], 2);
        let red = [1000u16, 0, 2000, 1000, 7, 7];
        let nir = [3000u16, 5000, 2000, 0, 7, 7];
        let mask = [true, true, true, false, true, true];
        let band = |d| Band {
            scale: 1e-4,
            nodata: Some(0.0),
            ..Band::raw(BandData::U16(d))
        };
        let bands = [band(&red), band(&nir)];
        let options = ZonalOptions {
            ndvi: Some((0, 1)),
            weighted_mean: false,
        };
        let out =
            zonal_statistics(&lr, &bands, Some(&mask), &options, &AtomicBool::new(false)).unwrap();
        assert_eq!(out.pixel_count, [3, 1]);
        // Pixel 1 is nodata in red; parcel 1's only pixel is masked.
        assert_eq!(out.valid_count, [2, 0]);
        assert_eq!(out.n_columns, 21);
        let row0 = &out.values[..21];
        assert!((row0[0] - 0.15).abs() < 1e-12); // red mean of 0.1 and 0.2
        assert!((row0[14] - 0.25).abs() < 1e-12); // NDVI mean of 0.5 and 0.0
        assert!(out.values[21..].iter().all(|v| v.is_nan()));
    }

    #[test]
    fn weighted_mean_uses_coverage() {
        let mut lr = raster(1, 3, vec![1, 1, 0], 1);
        lr.cov_offsets = vec![0, 3];
        lr.cov_pixels = vec![0, 1, 2];
        lr.cov_fraction = vec![1.0, 0.5, 0.25];
        let data = [2.0f32, 4.0, 8.0];
        let bands = [Band::raw(BandData::F32(&data))];
        let options = ZonalOptions {
            ndvi: None,
            weighted_mean: true,
        };
        let out = zonal_statistics(&lr, &bands, None, &options, &AtomicBool::new(false)).unwrap();
        assert_eq!(out.values[0], 3.0); // plain mean of the two member pixels
        assert!((out.values[7] - (2.0 + 2.0 + 2.0) / 1.75).abs() < 1e-12);
    }

    #[test]
    fn weighted_mean_without_coverage_is_refused() {
        let lr = raster(1, 2, vec![1, 1], 1);
        let data = [2.0f32, 4.0];
        let options = ZonalOptions {
            ndvi: None,
            weighted_mean: true,
        };
        let bands = [Band::raw(BandData::F32(&data))];
        let err = zonal_statistics(&lr, &bands, None, &options, &AtomicBool::new(false));
        assert!(matches!(err, Err(KernelError::Input(_))));
    }

    #[test]
    fn raised_flag_cancels() {
        let lr = raster(1, 2, vec![1, 1], 1);
        let data = [2.0f32, 4.0];
        let bands = [Band::raw(BandData::F32(&data))];
        let err = zonal_statistics(
            &lr,
            &bands,
            None,
            &ZonalOptions::default(),
            &AtomicBool::new(true),
        );
        assert_eq!(err, Err(KernelError::Cancelled));
    }

    #[test]
    fn band_of_wrong_size_is_refused() {
        let lr = raster(1, 2, vec![1, 1], 1);
        let data = [2.0f32];
        let bands = [Band::raw(BandData::F32(&data))];
        let err = zonal_statistics(
            &lr,
            &bands,
            None,
            &ZonalOptions::default(),
            &AtomicBool::new(false),
        );
        assert!(matches!(err, Err(KernelError::Input(m)) if m.contains("band 0")));
    }
}
