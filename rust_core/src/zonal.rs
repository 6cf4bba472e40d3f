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
//!
//! One pass: each band is read once per parcel, its nodata checked in the same read; the
//! statistics, NDVI and the weighted mean all work from those gathered values. The weighted
//! mean needs no second read of the interior: a member cell weighs 1 unless the label raster
//! lists it (its boundary), so `sum(f * v)` is the members' sum, already computed for the mean,
//! plus `(f - member) * v` over the few listed cells.

use std::sync::atomic::AtomicBool;

use rayon::prelude::*;

use crate::kernel_error::{check_cancel, input_error, KernelError};
use crate::label::LabelRaster;
use crate::raster_value::{Band, Gathered};

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
    /// One per band: its raw values at the parcel's valid members.
    gathered: Vec<Gathered>,
    /// One per output: sum of its unscaled values over the valid members.
    sums: Vec<f64>,
    ndvi: Vec<f64>,
    red: Vec<f64>,
    nir: Vec<f64>,
    /// Listed coverage cells that are valid, and their weight minus their membership.
    cells: Vec<u32>,
    deltas: Vec<f64>,
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
    let members = labels.parcel_pixels(p);
    s.keep.clear();
    match valid {
        Some(mask) => s.keep.extend(members.iter().map(|&i| mask[i as usize])),
        None => s.keep.resize(members.len(), true),
    }
    s.gathered.resize_with(bands.len(), Gathered::default);
    for (band, gathered) in bands.iter().zip(&mut s.gathered) {
        band.gather_checking(members, &mut s.keep, gathered);
    }
    let n_valid = s.keep.iter().filter(|&&k| k).count();
    if n_valid < members.len() {
        for gathered in &mut s.gathered {
            gathered.compact(&s.keep);
        }
    }
    // NDVI first: describing a band reorders its values.
    if let Some((red, nir)) = options.ndvi {
        let scaled = |b: usize, out: &mut Vec<f64>| {
            s.gathered[b].scaled(bands[b].scale, bands[b].offset, out);
        };
        scaled(red, &mut s.red);
        scaled(nir, &mut s.nir);
        ndvi_values(&s.red, &s.nir, &mut s.ndvi);
    }
    let k = options.stats_per_output();
    s.sums.clear();
    for (b, (band, gathered)) in bands.iter().zip(&mut s.gathered).enumerate() {
        let out = &mut row[b * k..b * k + STATS.len()];
        // Statistics on raw values, scaled at the end (scale > 0 keeps the order); integer
        // bands are selected on as i32, cheaper than f64.
        let sum = if gathered.is_int {
            describe(&mut gathered.ints, band.scale, band.offset, out)
        } else {
            describe(&mut gathered.floats, band.scale, band.offset, out)
        };
        s.sums.push(sum);
    }
    if options.ndvi.is_some() {
        let o = bands.len() * k;
        let sum = describe(&mut s.ndvi, 1.0, 0.0, &mut row[o..o + STATS.len()]);
        s.sums.push(sum);
    }
    if options.weighted_mean {
        weighted_means(labels, p, bands, valid, options, n_valid, s, row);
    }
    n_valid as u32
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

/// Writes the `wmean` column of every output for parcel `p`, from the sums over its
/// `n_valid` valid members (`s.sums`) corrected by its listed (boundary) cells.
#[allow(clippy::too_many_arguments)]
fn weighted_means(
    labels: &LabelRaster,
    p: usize,
    bands: &[Band<'_>],
    valid: Option<&[bool]>,
    options: &ZonalOptions,
    n_valid: usize,
    s: &mut Scratch,
    row: &mut [f64],
) {
    let k = options.stats_per_output();
    let (cells, fractions) = labels.parcel_coverage(p);
    // Validity of the listed cells by the same rule, one band at a time.
    s.keep.clear();
    match valid {
        Some(mask) => s.keep.extend(cells.iter().map(|&c| mask[c as usize])),
        None => s.keep.resize(cells.len(), true),
    }
    for band in bands {
        band.mark_nodata(cells, &mut s.keep);
    }
    let label = p as u32 + 1;
    s.cells.clear();
    s.deltas.clear();
    for ((&c, &f), _) in cells.iter().zip(fractions).zip(&s.keep).filter(|(_, &k)| k) {
        s.cells.push(c);
        s.deltas
            .push(f - f64::from(u8::from(labels.labels[c as usize] == label)));
    }
    // Zero when nothing is valid (both sums empty): the means are then 0 / 0 = NaN.
    let weight = n_valid as f64 + s.deltas.iter().sum::<f64>();
    for (b, band) in bands.iter().enumerate() {
        let total = s.sums[b] + band.weighted_raw_sum(&s.cells, &s.deltas);
        row[b * k + STATS.len()] = total / weight * band.scale + band.offset;
    }
    if let Some((red, nir)) = options.ndvi {
        bands[red].gather_scaled(&s.cells, &mut s.red);
        bands[nir].gather_scaled(&s.cells, &mut s.nir);
        let (mut total, mut ndvi_weight) = (s.sums[bands.len()], s.ndvi.len() as f64);
        for ((&r, &n), &d) in s.red.iter().zip(&s.nir).zip(&s.deltas) {
            if n + r > 0.0 {
                total += d * (n - r) / (n + r);
                ndvi_weight += d;
            }
        }
        row[bands.len() * k + STATS.len()] = total / ndvi_weight;
    }
}

/// A value the statistics are computed on: raw integers (exact) or floats without NaN.
pub trait Sample: Copy + PartialOrd {
    fn to_f64(self) -> f64;

    /// A total order, for selection (the values hold no NaN).
    fn total_order(&self, other: &Self) -> std::cmp::Ordering;

    /// Sum, extremes and population variance of non-empty `values`.
    fn moments(values: &[Self]) -> Moments<Self> {
        float_moments(values)
    }

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

/// [`Sample::moments`] in f64 arithmetic.
fn float_moments<T: Sample>(values: &[T]) -> Moments<T> {
    let (mut sum, mut min, mut max) = (0.0, values[0], values[0]);
    for &v in values {
        sum += v.to_f64();
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let n = values.len() as f64;
    let mean = sum / n;
    // Two-pass variance: stable where sum-of-squares would cancel.
    let var = values
        .iter()
        .map(|&v| (v.to_f64() - mean) * (v.to_f64() - mean))
        .sum::<f64>()
        / n;
    Moments { sum, min, max, var }
}

/// What [`Sample::moments`] gives.
pub struct Moments<T> {
    pub sum: f64,
    pub min: T,
    pub max: T,
    pub var: f64,
}

impl Sample for i32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }

    fn total_order(&self, other: &Self) -> std::cmp::Ordering {
        self.cmp(other)
    }

    /// Exact integer sums: the f64 sums of the default are a chain of dependent additions,
    /// the slowest part of a parcel's row.
    fn moments(values: &[Self]) -> Moments<Self> {
        let (mut sum, mut squares, mut min, mut max) = (0i64, 0i64, i32::MAX, i32::MIN);
        for &v in values {
            let w = i64::from(v);
            sum = sum.wrapping_add(w);
            squares = squares.wrapping_add(w * w);
            min = min.min(v);
            max = max.max(v);
        }
        // Raster integers are 16-bit: then n * 2^32 cannot overflow i64 (else redo in f64).
        let bits16 = -(1 << 16) <= min && max <= 1 << 16;
        if !(bits16 && values.len() < 1 << 30) {
            return float_moments(values);
        }
        let n = values.len() as i128;
        // n^2 var = n sum(v^2) - sum(v)^2, exact in i128; rounded once to f64.
        let scaled_var = n * i128::from(squares) - i128::from(sum) * i128::from(sum);
        let var = scaled_var as f64 / (n as f64 * n as f64);
        Moments {
            sum: sum as f64,
            min,
            max,
            var,
        }
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

    fn total_order(&self, other: &Self) -> std::cmp::Ordering {
        self.total_cmp(other)
    }
}

/// Order statistics by successive selections: everything after a selected rank is >= it, so
/// the next (larger) rank is searched for only in that part; the rank right after it (the
/// upper neighbour of a percentile's interpolation) is that part's minimum, a cheaper scan.
fn select_order_statistics<T: Sample>(values: &mut [T], ranks: &[usize], out: &mut [f64]) {
    let mut start = 0;
    for (o, &r) in out.iter_mut().zip(ranks) {
        if r == start {
            let rest = &values[start..];
            let lowest = (1..rest.len()).fold(0, |best, i| {
                if rest[i].total_order(&rest[best]).is_lt() {
                    i
                } else {
                    best
                }
            });
            values.swap(start, start + lowest);
        } else {
            values[start..].select_nth_unstable_by(r - start, T::total_order);
        }
        start = r + 1;
        *o = values[r].to_f64();
    }
}

/// Most order statistics one radix call finds.
const MAX_RANKS: usize = 8;

/// One thread's radix histograms, all zero between calls: each call clears the few entries it
/// used, cheaper than zeroing 9 KiB per band and parcel. Slot rows of `low` are
/// `2^low_bits` long; row `MAX_RANKS` takes the values of no wanted bucket.
struct RadixCounts {
    /// Two interleaved histograms: runs of equal buckets (a parcel's values are close) would
    /// otherwise chain each increment on the previous one's store.
    high: [[u32; 256]; 2],
    low: [u32; (MAX_RANKS + 1) * 256],
}

thread_local! {
    static RADIX: std::cell::RefCell<RadixCounts> = const {
        std::cell::RefCell::new(RadixCounts {
            high: [[0; 256]; 2],
            low: [0; (MAX_RANKS + 1) * 256],
        })
    };
}

/// Order statistics of integers spanning less than 2^16 by a two-level radix histogram: one
/// pass over the values counts their high bits, a second one the low bits inside the few
/// high-bit buckets that hold a wanted rank. O(n), no data movement, no branches to mispredict.
fn radix_order_statistics(values: &[i32], min: i32, range: u32, ranks: &[usize], out: &mut [f64]) {
    assert!(
        ranks.len() <= MAX_RANKS,
        "at most {MAX_RANKS} order statistics at once"
    );
    RADIX.with_borrow_mut(|counts| radix_with(counts, values, min, range, ranks, out));
}

fn radix_with(
    counts: &mut RadixCounts,
    values: &[i32],
    min: i32,
    range: u32,
    ranks: &[usize],
    out: &mut [f64],
) {
    let bits = u32::BITS - range.leading_zeros(); // <= 16
    let low_bits = bits / 2;
    let stride = 1usize << low_bits;
    let n_high = 1usize << (bits - low_bits);
    let low_mask = (1u32 << low_bits) - 1;
    let offset = |v: i32| (v - min) as u32;

    let [high, high_odd] = &mut counts.high;
    let mut pairs = values.chunks_exact(2);
    for pair in &mut pairs {
        high[(offset(pair[0]) >> low_bits) as usize] += 1;
        high_odd[(offset(pair[1]) >> low_bits) as usize] += 1;
    }
    for &v in pairs.remainder() {
        high[(offset(v) >> low_bits) as usize] += 1;
    }
    for (h, odd) in high[..n_high].iter_mut().zip(&mut high_odd[..n_high]) {
        *h += std::mem::take(odd);
    }
    // Bucket of each rank and the rank inside it; one slot per distinct bucket.
    const NO_SLOT: u8 = MAX_RANKS as u8;
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
    high[..n_high].fill(0);
    let low = &mut counts.low;
    for &v in values {
        let u = offset(v);
        let slot = slot_of[(u >> low_bits) as usize] as usize;
        low[slot * stride + (u & low_mask) as usize] += 1;
    }
    // Ranks are ascending, so each slot's scan goes on from where its previous rank stopped.
    let mut cursor = [(0usize, 0u32); MAX_RANKS]; // (value, count below it) per slot
    for (o, &(slot, r)) in out.iter_mut().zip(&wanted[..ranks.len()]) {
        let row = &low[slot * stride..(slot + 1) * stride];
        let (mut value, mut below) = cursor[slot];
        while below + row[value] <= r {
            below += row[value];
            value += 1;
        }
        cursor[slot] = (value, below);
        let u = (slot_bucket[slot] << low_bits) | value as u32;
        *o = f64::from(min) + f64::from(u);
    }
    low[..n_slots * stride].fill(0);
    low[MAX_RANKS * stride..(MAX_RANKS + 1) * stride].fill(0);
}

/// Writes mean, std (ddof 0), min, max, p10, p50, p90 of `values * scale + offset` into
/// `out[..7]` (`scale > 0`); NaN when empty. Returns the sum of the unscaled values. May
/// reorder `values` (selection for percentiles).
pub fn describe<T: Sample>(values: &mut [T], scale: f64, offset: f64, out: &mut [f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        out.fill(f64::NAN);
        return 0.0;
    }
    let Moments { sum, min, max, var } = T::moments(values);
    out[0] = sum / n as f64;
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
    sum
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
    fn integer_moments_are_the_float_ones_exactly_summed() {
        let mut rng = Lcg(11);
        for (n, spread) in [(1, 5), (7, 3), (500, 65536), (2000, 300)] {
            let v: Vec<i32> = (0..n).map(|_| (rng.next() % spread) as i32 - 200).collect();
            let (exact, float) = (i32::moments(&v), float_moments(&v));
            assert_eq!(
                (exact.sum, exact.min, exact.max),
                (float.sum, float.min, float.max)
            );
            assert!(
                (exact.var - float.var).abs() <= 1e-12 * float.var.max(1.0),
                "n={n}"
            );
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
        lr.coverage = true;
        lr.cov_offsets = vec![0, 2];
        lr.cov_pixels = vec![1, 2];
        lr.cov_fraction = vec![0.5, 0.25];
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

    /// A small deterministic generator (LCG), enough for test inputs.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }

        fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * (self.next() as f64 / (1u64 << 31) as f64)
        }
    }

    /// The statistics the straightforward way, as the kernel computed them before it was fused:
    /// valid members gathered per band and fully sorted; the weighted mean over every cell the
    /// polygon covers (computed here by `coverage_cells` itself), each checked in every band.
    fn reference_row(
        labels: &LabelRaster,
        edges: &[crate::polygons::Edge],
        p: usize,
        bands: &[Band<'_>],
        valid: &[bool],
        ndvi: (usize, usize),
    ) -> Vec<f64> {
        let is_valid = |c: usize| {
            let (mut keep, mut g) = ([valid[c]], crate::raster_value::Gathered::default());
            bands
                .iter()
                .for_each(|b| b.gather_checking(&[c as u32], &mut keep, &mut g));
            keep[0]
        };
        let members: Vec<u32> = labels
            .parcel_pixels(p)
            .iter()
            .copied()
            .filter(|&c| is_valid(c as usize))
            .collect();
        let (mut cells, mut fractions) = (Vec::new(), Vec::new());
        crate::coverage::coverage_cells(edges, &labels.grid, &mut cells, &mut fractions);
        let scaled = |b: usize, list: &[u32]| {
            let mut out = Vec::new();
            bands[b].gather_scaled(list, &mut out);
            out
        };
        let describe_sorted = |mut v: Vec<f64>| {
            if v.is_empty() {
                return vec![f64::NAN; 7];
            }
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
            let mut out = vec![mean, var.sqrt(), v[0], v[v.len() - 1]];
            for q in PERCENTILES {
                let vi = (n - 1.0) * q / 100.0;
                let lo = vi.floor() as usize;
                out.push(lerp(v[lo], v[(lo + 1).min(v.len() - 1)], vi - lo as f64));
            }
            out
        };
        let weighted = |value: &dyn Fn(usize) -> Option<f64>| {
            let (mut total, mut weight) = (0.0, 0.0);
            for (&c, &f) in cells.iter().zip(&fractions) {
                if let Some(v) = value(c as usize).filter(|_| is_valid(c as usize)) {
                    total += f * v;
                    weight += f;
                }
            }
            total / weight
        };
        let at = |b: usize, c: usize| scaled(b, &[c as u32])[0];
        let mut row = Vec::new();
        for b in 0..bands.len() {
            row.extend(describe_sorted(scaled(b, &members)));
            row.push(weighted(&|c| Some(at(b, c))));
        }
        let ndvi_of = |r: f64, n: f64| (n + r > 0.0).then(|| (n - r) / (n + r));
        let (red, nir) = (scaled(ndvi.0, &members), scaled(ndvi.1, &members));
        let values = red.iter().zip(&nir).filter_map(|(&r, &n)| ndvi_of(r, n));
        row.extend(describe_sorted(values.collect()));
        row.push(weighted(&|c| ndvi_of(at(ndvi.0, c), at(ndvi.1, c))));
        row
    }

    #[test]
    fn fused_pass_matches_the_straightforward_one_on_random_overlapping_polygons() {
        use crate::label_build::build_label_raster;
        use crate::polygons::{PixelTransform, RaggedPolygons};

        let mut rng = Lcg(2024);
        let (h, w) = (60, 70);
        let grid = Grid::new(h, w, [10.0, 0.0, 500.0, 0.0, -10.0, 1000.0]);
        // Random quadrilaterals and triangles (convex, hence valid), overlapping, some partly
        // outside the grid, some smaller than a pixel.
        let (mut coords, mut rings) = (Vec::new(), vec![0i64]);
        let n = 80;
        for i in 0..n {
            let (cx, cy) = (rng.uniform(450.0, 1250.0), rng.uniform(350.0, 1050.0));
            let r = if i % 9 == 0 {
                4.0
            } else {
                rng.uniform(8.0, 120.0)
            };
            let sides = 3 + i % 2;
            let phase = rng.uniform(0.0, std::f64::consts::TAU);
            for k in 0..=sides {
                let a = phase + std::f64::consts::TAU * (k % sides) as f64 / sides as f64;
                coords.extend_from_slice(&[cx + r * a.cos(), cy + r * a.sin()]);
            }
            rings.push(coords.len() as i64 / 2);
        }
        let counts: Vec<i64> = (0..=n as i64).collect();
        let lr = build_label_raster(grid, &coords, &rings, &counts, &counts, true).unwrap();
        let polygons = RaggedPolygons {
            coords: &coords,
            ring_offsets: &rings,
            polygon_offsets: &counts,
            geometry_offsets: &counts,
        };
        let to_pixel = PixelTransform::new(&grid).unwrap();

        // Three u16 bands with nodata 0 (~3 %), one f32 band with NaN, a validity mask.
        let ints: Vec<Vec<u16>> = (0..3)
            .map(|_| {
                (0..h * w)
                    .map(|_| match rng.next() % 100 {
                        0..=2 => 0,
                        _ => (rng.next() % 9000) as u16 + 1,
                    })
                    .collect()
            })
            .collect();
        let floats: Vec<f32> = (0..h * w)
            .map(|_| match rng.next() % 50 {
                0 => f32::NAN,
                _ => rng.uniform(-20.0, 5.0) as f32,
            })
            .collect();
        let valid: Vec<bool> = (0..h * w).map(|_| !rng.next().is_multiple_of(10)).collect();
        let mut bands: Vec<Band<'_>> = ints
            .iter()
            .map(|d| Band {
                scale: 1e-4,
                offset: -0.1,
                nodata: Some(0.0),
                data: BandData::U16(d),
            })
            .collect();
        bands.push(Band::raw(BandData::F32(&floats)));
        let options = ZonalOptions {
            ndvi: Some((1, 2)),
            weighted_mean: true,
        };
        let out =
            zonal_statistics(&lr, &bands, Some(&valid), &options, &AtomicBool::new(false)).unwrap();
        let mut compared = 0;
        for p in 0..n {
            let edges = polygons.parcel_edges(p, &to_pixel);
            let expected = reference_row(&lr, &edges, p, &bands, &valid, (1, 2));
            let got = &out.values[p * out.n_columns..(p + 1) * out.n_columns];
            for (c, (&g, &e)) in got.iter().zip(&expected).enumerate() {
                let close = (g - e).abs() <= 1e-12 * e.abs().max(1.0);
                assert!(
                    close || (g.is_nan() && e.is_nan()),
                    "parcel {p} column {c}: {g} vs {e}"
                );
                compared += usize::from(e.is_finite());
            }
        }
        assert!(
            compared > 2000,
            "too few finite statistics compared: {compared}"
        );
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
