//! Practice detection kernels: parcel observation rows onto the model's day-of-year grid,
//! peak decoding of the per-bin probabilities, and the evidence rows around an event.
//!
//! Parcel ids and tiles come ranked, sensor and source coded (`practice_strings`); these
//! kernels do the rest of what touches every row. Results are bit-identical to the numpy
//! formulation they replace: sums in f64 in row order, means cast to f32, interpolation and
//! normalisation in f32.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::arrow_validity::{self, Validity};
use crate::kernel_error::KernelError;

/// Row kinds (`RowTable::kind`).
pub const KIND_OTHER: u8 = 0;
/// A clear Sentinel-2 observation (enough valid pixels, not reconstructed, NDVI finite).
pub const KIND_S2_CLEAR: u8 = 1;
/// A reconstructed Sentinel-2 row (NDVI finite).
pub const KIND_S2_REBUILT: u8 = 2;
/// A Sentinel-1 row with finite VV and VH.
pub const KIND_S1: u8 = 3;
/// `RowTable::tile` of a row without a tile.
pub const NO_TILE: u32 = u32::MAX;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Proleptic Gregorian (year, day of year from 1) of a day count since 1970-01-01.
pub fn year_and_ordinal_day(days: i64) -> (i32, u32) {
    // Howard Hinnant's civil_from_days, then the ordinal of the date in its year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_march = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy_march + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    // days from 1 January to 1 March of `year`
    let jan_to_mar = 59 + i64::from(leap);
    let ordinal = if month <= 2 {
        doy_march - 306 + 1
    } else {
        doy_march + jan_to_mar + 1
    };
    (year as i32, ordinal as u32)
}

/// The day-of-year grid and where each feature goes in the model input.
#[derive(Clone, Debug)]
pub struct GridLayout {
    pub start_doy: i64,
    pub bin_days: i64,
    pub n_bins: usize,
    pub n_channels: usize,
    /// Channel and (centre, scale) of each Sentinel-2 feature given (the first is NDVI).
    pub s2_channels: Vec<usize>,
    pub s2_norm: Vec<(f32, f32)>,
    pub s2_observed: usize,
    pub s2_reconstructed: usize,
    /// Channels and norms of VV, VH and VH - VV, then the S1 observed-mask channel.
    pub s1_channels: [usize; 3],
    pub s1_norm: [(f32, f32); 3],
    pub s1_observed: usize,
}

/// A chunk of a float column as Arrow holds it: values and, when some are null, the
/// validity bitmap (bit `offset + row`, least significant bit first).
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    pub values: &'a [f64],
    pub validity: Validity<'a>,
}

impl Chunk<'_> {
    /// Whether the bitmap covers every value.
    fn is_whole(&self) -> bool {
        arrow_validity::covers(self.validity, self.values.len())
    }

    #[inline]
    fn is_valid(&self, row: usize) -> bool {
        arrow_validity::is_valid(self.validity, row)
    }

    /// The value of a row of the chunk, NaN when null.
    #[inline]
    fn get(&self, row: usize) -> f64 {
        if self.is_valid(row) {
            self.values[row]
        } else {
            f64::NAN
        }
    }
}

/// How the columns of a table are cut into chunks (Arrow record batches), so chunked columns
/// are read in place, not joined: each chunk's first row, and the chunk holding the first row
/// of every block of `2^BLOCK_BITS` rows (a row's chunk is found among the few chunks of its
/// block, from a table small enough to stay in cache, not from a per-row array).
#[derive(Debug)]
pub struct RowChunks {
    start: Vec<usize>,
    block: Vec<u32>,
}

const BLOCK_BITS: u32 = 12;

impl RowChunks {
    /// The chunks of these lengths, in order.
    pub fn new(lengths: &[usize]) -> Result<Self, KernelError> {
        if u32::try_from(lengths.len()).is_err() {
            return Err(KernelError::Input("more than 2^32 chunks".into()));
        }
        let mut start = Vec::with_capacity(lengths.len() + 1);
        start.push(0);
        for &len in lengths {
            start.push(start[start.len() - 1] + len);
        }
        let n = start[lengths.len()];
        // block[b]: the chunk of row min(b << BLOCK_BITS, n - 1), for b up to the block count
        let blocks = n.div_ceil(1 << BLOCK_BITS);
        let mut block = Vec::with_capacity(blocks + 1);
        let mut c = 0;
        for b in 0..=blocks {
            let row = (b << BLOCK_BITS).min(n.saturating_sub(1));
            while c + 1 < lengths.len() && start[c + 1] <= row {
                c += 1;
            }
            block.push(c as u32);
        }
        Ok(RowChunks { start, block })
    }

    pub fn lengths(&self) -> impl Iterator<Item = usize> + '_ {
        self.start.windows(2).map(|w| w[1] - w[0])
    }

    /// Rows in all.
    pub fn len(&self) -> usize {
        self.start[self.start.len() - 1]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunk of a row and the row's index in it.
    #[inline]
    fn locate(&self, row: usize) -> (usize, usize) {
        let b = row >> BLOCK_BITS;
        let (first, last) = (self.block[b] as usize, self.block[b + 1] as usize);
        // the row's chunk is the last of first..=last starting at or before it
        let c = first + self.start[first + 1..=last].partition_point(|&s| s <= row);
        (c, row - self.start[c])
    }
}

/// A float column read in place from its chunks (cut as `rows` says). A null reads as NaN.
#[derive(Clone, Copy, Debug)]
pub struct Floats<'a> {
    pub chunks: &'a [Chunk<'a>],
    pub rows: &'a RowChunks,
}

impl Floats<'_> {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether the chunks are cut as `rows` says, each bitmap covering its chunk.
    fn is_whole(&self) -> bool {
        self.chunks.len() + 1 == self.rows.start.len()
            && self
                .chunks
                .iter()
                .zip(self.rows.lengths())
                .all(|(c, len)| c.values.len() == len && c.is_whole())
    }

    #[inline]
    fn locate(&self, row: usize) -> (&Chunk<'_>, usize) {
        let (c, i) = self.rows.locate(row);
        (&self.chunks[c], i)
    }

    /// Whether the row's value is not null.
    #[inline]
    pub fn is_valid(&self, row: usize) -> bool {
        let (chunk, i) = self.locate(row);
        chunk.is_valid(i)
    }

    /// The value of row `i` of chunk `c` (`RowChunks::locate`), NaN when null.
    #[inline]
    fn at(&self, (c, i): (usize, usize)) -> f64 {
        self.chunks[c].get(i)
    }

    /// The row's value, NaN when null.
    #[inline]
    pub fn get(&self, row: usize) -> f64 {
        let (chunk, i) = self.locate(row);
        chunk.get(i)
    }
}

/// The rows of an observation table, one entry per row in every slice.
pub struct RowTable<'a> {
    /// Rank of the row's parcel id (series are ordered by it, then by year).
    pub parcel: &'a [u32],
    pub n_parcels: usize,
    /// Acquisition time, microseconds since 1970-01-01 UTC.
    pub micros: &'a [i64],
    /// One of the `KIND_*` constants.
    pub kind: &'a [u8],
    /// Rank of the row's tile id (`NO_TILE`: none); a series takes its smallest.
    pub tile: &'a [u32],
    /// Sentinel-2 features, in `GridLayout::s2_channels` order (NaN: missing).
    pub s2: Vec<Floats<'a>>,
    /// VV and VH (dB), when the table has them.
    pub s1: Option<(Floats<'a>, Floats<'a>)>,
}

/// One series per parcel-year, in (parcel rank, year) order, and the model input.
#[derive(Debug, Default)]
pub struct SeriesGrid {
    pub parcel: Vec<u32>,
    pub year: Vec<i32>,
    pub tile: Vec<u32>,
    /// `[series, n_channels, n_bins]`, row-major.
    pub values: Vec<f32>,
}

impl RowTable<'_> {
    fn check(&self) -> Result<(), KernelError> {
        if self.s2.is_empty() {
            return Err(KernelError::Input(
                "no Sentinel-2 feature (NDVI first)".into(),
            ));
        }
        let n = self.parcel.len();
        let mut lengths = vec![self.micros.len(), self.kind.len(), self.tile.len()];
        let mut floats = self.s2.clone();
        if let Some((vv, vh)) = self.s1 {
            floats.extend([vv, vh]);
        }
        lengths.extend(floats.iter().map(Floats::len));
        let same_cut = |f: &Floats<'_>| f.rows.start == self.s2[0].rows.start;
        if !floats.iter().all(|f| same_cut(f) && f.is_whole()) {
            return Err(KernelError::Input(
                "a feature's chunks differ from the table's, or a bitmap is short".into(),
            ));
        }
        if lengths.iter().any(|&len| len != n) {
            return Err(KernelError::Input(format!(
                "row arrays differ in length: {n} parcels, others {lengths:?}"
            )));
        }
        if u32::try_from(n).is_err() {
            return Err(KernelError::Input(format!("{n} rows: at most 2^32")));
        }
        if let Some(&bad) = self.parcel.iter().find(|&&p| p as usize >= self.n_parcels) {
            return Err(KernelError::Input(format!(
                "parcel rank {bad} out of range (n_parcels {})",
                self.n_parcels
            )));
        }
        Ok(())
    }
}

/// `RowCodes::sensor` of a Sentinel-2 row and of a Sentinel-1 row (0: other or null).
pub const SENSOR_S2: u8 = 1;
pub const SENSOR_S1: u8 = 2;
/// `RowCodes::source` of an observed row and of a reconstructed one (0: other or null).
pub const SOURCE_OBSERVED: u8 = 1;
pub const SOURCE_REBUILT: u8 = 2;

/// What classifies a row: its sensor and source codes and the columns read.
pub struct RowCodes<'a> {
    pub sensor: &'a [u8],
    pub source: &'a [u8],
    pub valid_fraction: Floats<'a>,
    pub ndvi: Floats<'a>,
    /// VV and VH, when S1 rows feed the model.
    pub s1: Option<(Floats<'a>, Floats<'a>)>,
}

/// Per row, its `KIND_*` and whether it may be an event's evidence (a Sentinel-2 row,
/// observed, with at least `evidence_min_valid` valid pixels and a non-NaN NDVI). Kinds: a
/// Sentinel-2 row with a finite NDVI is reconstructed, else clear with at least `min_valid`
/// valid pixels; a Sentinel-1 row with finite VV and VH is S1. A NaN valid fraction counts
/// as above any threshold (polars orders NaN above every number), a null one as below.
pub fn row_kinds(
    rows: &RowCodes<'_>,
    min_valid: f64,
    evidence_min_valid: f64,
) -> Result<(Vec<u8>, Vec<bool>), KernelError> {
    let n = rows.sensor.len();
    let mut floats = vec![rows.valid_fraction, rows.ndvi];
    if let Some((vv, vh)) = rows.s1 {
        floats.extend([vv, vh]);
    }
    let same_cut = |f: &Floats<'_>| f.len() == n && f.rows.start == rows.ndvi.rows.start;
    if rows.source.len() != n || !floats.iter().all(|f| same_cut(f) && f.is_whole()) {
        return Err(KernelError::Input(
            "row codes and columns differ in length".into(),
        ));
    }
    // Chunk by chunk (in pieces of at most `PIECE` rows, in parallel): values read straight
    // from their chunk, no per-row chunk lookup.
    const PIECE: usize = 1 << 16;
    let mut kind = vec![KIND_OTHER; n];
    let mut evidence = vec![false; n];
    let mut pieces = Vec::new();
    let (mut kind_rest, mut evidence_rest) = (kind.as_mut_slice(), evidence.as_mut_slice());
    for (c, len) in rows.ndvi.rows.lengths().enumerate() {
        for first in (0..len).step_by(PIECE) {
            let m = PIECE.min(len - first);
            let (k, k_rest) = kind_rest.split_at_mut(m);
            let (e, e_rest) = evidence_rest.split_at_mut(m);
            pieces.push((c, first, k, e));
            (kind_rest, evidence_rest) = (k_rest, e_rest);
        }
    }
    pieces
        .into_par_iter()
        .for_each(|(c, first, kinds, evidences)| {
            let (valid, ndvi) = (&rows.valid_fraction.chunks[c], &rows.ndvi.chunks[c]);
            let s1 = rows.s1.map(|(vv, vh)| (&vv.chunks[c], &vh.chunks[c]));
            let row0 = rows.ndvi.rows.start[c] + first;
            for (j, (kind, evidence)) in kinds.iter_mut().zip(evidences.iter_mut()).enumerate() {
                let (i, r) = (first + j, row0 + j);
                let at_least = |threshold: f64| {
                    let v = valid.values[i];
                    valid.is_valid(i) && (v.is_nan() || v >= threshold)
                };
                let ndvi = ndvi.get(i);
                let (sensor, source) = (rows.sensor[r], rows.source[r]);
                let s2 = sensor == SENSOR_S2 && ndvi.is_finite();
                *kind = if s2 && source == SOURCE_REBUILT {
                    KIND_S2_REBUILT
                } else if s2 && at_least(min_valid) {
                    KIND_S2_CLEAR
                } else if sensor == SENSOR_S1
                    && s1.is_some_and(|(vv, vh)| vv.get(i).is_finite() && vh.get(i).is_finite())
                {
                    KIND_S1
                } else {
                    KIND_OTHER
                };
                *evidence = sensor == SENSOR_S2
                    && source == SOURCE_OBSERVED
                    && at_least(evidence_min_valid)
                    && !ndvi.is_nan();
            }
        });
    Ok((kind, evidence))
}

/// Row indices grouped by parcel (stable: table order inside a parcel), parcel offsets, and
/// each grouped row's `pack`ed kind and grid bin, with its year counted from `first_year` in
/// place of the slot: the rows' columns are read here in table order, once.
fn rows_by_parcel(
    rows: &RowTable<'_>,
    calendar: &Calendar,
    first_year: i32,
) -> (Vec<u32>, Vec<usize>, Vec<u32>) {
    let entry = |row: usize| {
        let (year, bin) = calendar.day(rows.micros[row]);
        pack((year - first_year) as u32, rows.kind[row], bin)
    };
    let pieces = sort_pieces(rows.parcel.len(), rows.n_parcels);
    group_by_parcel(rows.parcel, rows.n_parcels, entry, pieces)
}

/// How many pieces `group_by_parcel` cuts `n` rows into: one per thread, fewer when there
/// are few rows per parcel (each piece counts its rows of every parcel).
fn sort_pieces(n: usize, n_parcels: usize) -> usize {
    rayon::current_num_threads()
        .min(n / n_parcels.max(1))
        .max(1)
}

/// A pointer to a buffer that threads write at disjoint indices.
#[derive(Clone, Copy)]
struct Disjoint<T>(*mut T);

// SAFETY: `group_by_parcel` gives every thread indices no other thread writes.
unsafe impl<T: Send> Send for Disjoint<T> {}
unsafe impl<T: Send> Sync for Disjoint<T> {}

/// A stable counting sort of the rows by parcel, `pieces` pieces of rows in parallel: (row
/// indices grouped by parcel, in table order inside a parcel; parcel offsets; `value` of
/// each grouped row, called once per row, in table order within a piece). Every
/// parcel rank must be below `n_parcels` and there must be fewer than 2^32 rows.
fn group_by_parcel<V: Copy + Default + Send + Sync>(
    parcel: &[u32],
    n_parcels: usize,
    value: impl Fn(usize) -> V + Sync,
    pieces: usize,
) -> (Vec<u32>, Vec<usize>, Vec<V>) {
    let n = parcel.len();
    let piece = n.div_ceil(pieces.max(1)).max(1);
    // Each piece's count of rows per parcel, then turned into where its rows go.
    let mut cursors: Vec<Vec<usize>> = parcel
        .par_chunks(piece)
        .map(|ps| {
            let mut counts = vec![0usize; n_parcels];
            for &p in ps {
                counts[p as usize] += 1;
            }
            counts
        })
        .collect();
    let mut offsets = vec![0usize; n_parcels + 1];
    let mut at = 0;
    for p in 0..n_parcels {
        offsets[p] = at;
        for counts in &mut cursors {
            let count = counts[p];
            counts[p] = at;
            at += count;
        }
    }
    offsets[n_parcels] = at;
    let mut order = vec![0u32; at];
    let mut values = vec![V::default(); at];
    let (order_out, values_out) = (Disjoint(order.as_mut_ptr()), Disjoint(values.as_mut_ptr()));
    parcel
        .par_chunks(piece)
        .zip(cursors.par_iter_mut())
        .enumerate()
        .for_each(|(k, (ps, cursor))| {
            let (order_out, values_out) = (order_out, values_out);
            for (i, &p) in ps.iter().enumerate() {
                let row = k * piece + i;
                let at = &mut cursor[p as usize];
                // SAFETY: piece k's rows of parcel p go to the `at`s from its cursor start up
                // to the next piece's (or parcel's): indices below the row count that no
                // other piece writes.
                unsafe {
                    *order_out.0.add(*at) = row as u32;
                    *values_out.0.add(*at) = value(row);
                }
                *at += 1;
            }
        });
    (order, offsets, values)
}

/// Per-bin sums (f64, row order) and counts of some features over some rows of one series.
struct BinSums {
    n_bins: usize,
    rows: Vec<u32>,   // rows per bin
    sums: Vec<f64>,   // [feature, bin]
    finite: Vec<u32>, // [feature, bin]
    touched: bool,    // rows were added since the last `clear`
}

impl BinSums {
    fn new(features: usize, n_bins: usize) -> Self {
        BinSums {
            n_bins,
            rows: vec![0; n_bins],
            sums: vec![0.0; features * n_bins],
            finite: vec![0; features * n_bins],
            touched: false,
        }
    }

    /// Empties the sums; cheap when nothing was added (most series have no reconstructed rows).
    fn clear(&mut self) {
        if self.touched {
            self.rows.fill(0);
            self.sums.fill(0.0);
            self.finite.fill(0);
            self.touched = false;
        }
    }

    fn add(&mut self, bin: usize, values: impl Iterator<Item = f64>) {
        self.touched = true;
        self.rows[bin] += 1;
        for (f, v) in values.enumerate() {
            if v.is_finite() {
                self.sums[f * self.n_bins + bin] += v;
                self.finite[f * self.n_bins + bin] += 1;
            }
        }
    }

    /// Mean of feature `f` in `bin` (f64 sum over the count, cast to f32), NaN without a
    /// finite value. Computed only for the bins the interpolation reads.
    fn mean(&self, f: usize, bin: usize) -> f32 {
        let i = f * self.n_bins + bin;
        if self.finite[i] > 0 {
            (self.sums[i] / f64::from(self.finite[i])) as f32
        } else {
            f32::NAN
        }
    }
}

/// Where each bin interpolates from: the seen bins before and after it (the same one beyond
/// the first and last seen bin) and the weight of the later one.
#[derive(Clone, Copy, Default)]
struct Span {
    before: usize,
    after: usize,
    weight: f32,
}

/// The `Span` of every bin for one pattern of seen bins (at least one seen).
fn spans(seen: &[bool], out: &mut [Span]) {
    let n = seen.len() as i64;
    let mut prev = -1i64;
    for (t, span) in out.iter_mut().enumerate() {
        if seen[t] {
            prev = t as i64;
        }
        span.before = prev as usize; // -1 (none yet) is fixed up below
        span.weight = if prev < 0 { -1.0 } else { 0.0 };
    }
    let mut next = n;
    for t in (0..seen.len()).rev() {
        if seen[t] {
            next = t as i64;
        }
        let p = if out[t].weight < 0.0 {
            next
        } else {
            out[t].before as i64
        }
        .clamp(0, n - 1);
        let q = if next < n { next } else { p };
        out[t] = Span {
            before: p as usize,
            after: q as usize,
            weight: ((t as i64 - p) as f64 / (q - p).max(1) as f64) as f32,
        };
    }
}

/// Channel `channel` of a series' `[n_channels, n_bins]` block.
fn channel_of(out: &mut [f32], channel: usize, n_bins: usize) -> &mut [f32] {
    &mut out[channel * n_bins..(channel + 1) * n_bins]
}

/// Zeros `channels` of a series' block: features the series never has.
fn zero_channels<'c>(
    out: &mut [f32],
    channels: impl IntoIterator<Item = &'c usize>,
    n_bins: usize,
) {
    for &channel in channels {
        channel_of(out, channel, n_bins).fill(0.0);
    }
}

/// One feature's bin means interpolated along `spans`, normalised, NaN as 0 (infinities as
/// the extreme finite values, as `numpy.nan_to_num`), written to `out`. The gather first,
/// then the normalisation on its own: a loop without indices, which the compiler vectorises
/// (its division was most of the cost); the same f32 operations in the same order.
fn interpolate_into(out: &mut [f32], means: &[f32], spans: &[Span], (centre, scale): (f32, f32)) {
    for (o, span) in out.iter_mut().zip(spans) {
        let (before, after) = (means[span.before], means[span.after]);
        *o = before + span.weight * (after - before);
    }
    for o in out.iter_mut() {
        let value = (*o - centre) / scale;
        *o = if value.is_nan() {
            0.0
        } else {
            value.clamp(f32::MIN, f32::MAX)
        };
    }
}

/// (year, grid bin) of every day between the first and last acquisition, looked up per row:
/// the civil-date arithmetic and the division by the bin width would cost more than the rest
/// of the row's work.
struct Calendar {
    first_day: i64,
    /// Year and bin (`NO_BIN` outside the grid) of each day.
    days: Vec<(i32, u32)>,
}

/// `Calendar` bin of a day outside the grid.
const NO_BIN: u32 = u32::MAX;

/// Longest span of acquisition days a table may cover (~11 000 years).
const MAX_DAYS: i64 = 4_000_000;

impl Calendar {
    fn spanning(micros: &[i64], layout: &GridLayout) -> Result<Self, KernelError> {
        let first = micros.par_iter().copied().min().unwrap_or(0);
        let last = micros.par_iter().copied().max().unwrap_or(0);
        let (first_day, last_day) = (
            first.div_euclid(MICROS_PER_DAY),
            last.div_euclid(MICROS_PER_DAY),
        );
        if last_day - first_day >= MAX_DAYS {
            return Err(KernelError::Input(format!(
                "acquisition times span {} days: at most {MAX_DAYS}",
                last_day - first_day
            )));
        }
        let days = (first_day..=last_day)
            .map(|day| {
                let (year, doy) = year_and_ordinal_day(day);
                let bin = (i64::from(doy) - layout.start_doy).div_euclid(layout.bin_days);
                let in_grid = (0..layout.n_bins as i64).contains(&bin);
                (year, if in_grid { bin as u32 } else { NO_BIN })
            })
            .collect();
        Ok(Calendar { first_day, days })
    }

    /// (year, bin) of a time.
    fn day(&self, micros: i64) -> (i32, u32) {
        self.days[(micros.div_euclid(MICROS_PER_DAY) - self.first_day) as usize]
    }
}

/// The series of a table (one per parcel-year, in (parcel rank, year) order) and where their
/// rows are: what filling any batch of series on the grid needs.
pub struct SeriesPlan {
    /// Row indices grouped by parcel (table order inside a parcel), and parcel offsets.
    order: Vec<u32>,
    offsets: Vec<usize>,
    /// Per entry of `order`: its year's place among its parcel's years, kind and grid bin
    /// (`pack`), so filling a series reads them in sequence, not from the row columns.
    packed: Vec<u32>,
    /// Each series' place among its parcel's years.
    slot: Vec<u32>,
    pub parcel: Vec<u32>,
    pub year: Vec<i32>,
    /// Each series' smallest tile rank among its rows (`NO_TILE`: none has a tile).
    pub tile: Vec<u32>,
}

/// Bits of `SeriesPlan::packed`: bin (`BIN_MASK`: outside the grid), kind, year slot.
const BIN_BITS: u32 = 14;
const BIN_MASK: u32 = (1 << BIN_BITS) - 1;
const KIND_BITS: u32 = 2;
// Year slots: more than the years `MAX_DAYS` of acquisitions can cover.
const _: () = assert!(MAX_DAYS / 365 + 2 < 1 << (32 - BIN_BITS - KIND_BITS));

/// A row's `SeriesPlan::packed` entry (a kind other than `KIND_*` is `KIND_OTHER`).
fn pack(slot: u32, kind: u8, bin: u32) -> u32 {
    let bin = if bin == NO_BIN { BIN_MASK } else { bin };
    let kind = if kind > KIND_S1 { KIND_OTHER } else { kind };
    (slot << (BIN_BITS + KIND_BITS)) | (u32::from(kind) << BIN_BITS) | bin
}

impl SeriesPlan {
    /// Checks the rows and finds their series.
    pub fn new(rows: &RowTable<'_>, layout: &GridLayout) -> Result<Self, KernelError> {
        rows.check()?;
        if layout.s2_channels.len() != rows.s2.len() || layout.s2_norm.len() != rows.s2.len() {
            return Err(KernelError::Input(
                "S2 features, channels and norms differ in count".into(),
            ));
        }
        if layout.n_bins >= BIN_MASK as usize {
            return Err(KernelError::Input(format!(
                "{} bins: at most {}",
                layout.n_bins,
                BIN_MASK - 1
            )));
        }
        let calendar = Calendar::spanning(rows.micros, layout)?;
        let first_year = calendar.days.first().map_or(0, |d| d.0);
        let (order, offsets, mut packed) = rows_by_parcel(rows, &calendar, first_year);
        let mut parcels = Vec::with_capacity(rows.n_parcels);
        let mut rest = packed.as_mut_slice();
        for p in 0..rows.n_parcels {
            let (mine, others) = rest.split_at_mut(offsets[p + 1] - offsets[p]);
            parcels.push((p, mine));
            rest = others;
        }
        // Each parcel's distinct years (sorted), with the smallest tile of each year's rows;
        // each entry's year (counted from `first_year`) becomes its year's slot.
        let years: Vec<Vec<(i32, u32)>> = parcels
            .into_par_iter()
            .map(|(p, packed)| {
                let parcel_rows = &order[offsets[p]..offsets[p + 1]];
                let year = |entry: u32| entry >> (BIN_BITS + KIND_BITS);
                let mut ys: Vec<(u32, u32)> = parcel_rows
                    .iter()
                    .zip(packed.iter())
                    .map(|(&r, &entry)| (year(entry), rows.tile[r as usize]))
                    .collect();
                ys.sort_unstable();
                ys.dedup_by_key(|y| y.0); // keeps the first, smallest tile of each year
                for entry in packed.iter_mut() {
                    let slot = ys.partition_point(|y| y.0 < year(*entry)) as u32;
                    *entry = (slot << (BIN_BITS + KIND_BITS)) | (*entry & ((1 << 16) - 1));
                }
                ys.iter()
                    .map(|&(y, tile)| (first_year + y as i32, tile))
                    .collect()
            })
            .collect();
        let n_series: usize = years.iter().map(Vec::len).sum();
        let mut plan = SeriesPlan {
            order,
            offsets,
            packed,
            slot: Vec::with_capacity(n_series),
            parcel: Vec::with_capacity(n_series),
            year: Vec::with_capacity(n_series),
            tile: Vec::with_capacity(n_series),
        };
        for (p, ys) in years.iter().enumerate() {
            plan.parcel.extend(std::iter::repeat_n(p as u32, ys.len()));
            plan.slot.extend(0..ys.len() as u32);
            plan.year.extend(ys.iter().map(|y| y.0));
            plan.tile.extend(ys.iter().map(|y| y.1));
        }
        Ok(plan)
    }

    pub fn len(&self) -> usize {
        self.parcel.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parcel.is_empty()
    }

    /// Fills series `first..first + out.len() / series size` into `out` (`[series,
    /// n_channels, n_bins]`; every value is written, whatever was there).
    fn fill(
        &self,
        rows: &RowTable<'_>,
        layout: &GridLayout,
        scratch: &mut SeriesScratch,
        first: usize,
        out: &mut [f32],
    ) {
        let series_size = layout.n_channels * layout.n_bins;
        for (i, block) in out.chunks_exact_mut(series_size).enumerate() {
            let s = first + i;
            let p = self.parcel[s] as usize;
            let span = self.offsets[p]..self.offsets[p + 1];
            let entries = (&self.order[span.clone()], &self.packed[span]);
            scratch.fill(rows, layout, entries, self.slot[s], block);
        }
    }
}

/// Resamples the rows onto the grid: per parcel-year series, bin means of the clear S2 rows
/// (else the reconstructed ones) and of the S1 rows, interpolated over the gaps and
/// normalised, with the observed masks as channels. A feature a series never has is 0.
pub fn series_grid(rows: &RowTable<'_>, layout: &GridLayout) -> Result<SeriesGrid, KernelError> {
    let plan = SeriesPlan::new(rows, layout)?;
    let series_size = layout.n_channels * layout.n_bins;
    let mut values = vec![0.0; plan.len() * series_size];
    values
        .par_chunks_mut(series_size * 64)
        .enumerate()
        .for_each_init(
            || SeriesScratch::new(rows, layout),
            |scratch, (k, out)| plan.fill(rows, layout, scratch, k * 64, out),
        );
    Ok(SeriesGrid {
        parcel: plan.parcel,
        year: plan.year,
        tile: plan.tile,
        values,
    })
}

/// Fills the plan's series on the grid batch by batch, `batch` series at a time, and hands
/// each batch to `run(buffer index, first series, values)` as soon as it is filled. Each of
/// `buffers` (at least `batch` series long) serves one thread, reused batch after batch, so
/// the grid is never whole in memory and one thread fills while another runs the model.
/// Batches are taken in order; after an error or `cancel` no new batch starts. Returns the
/// first error of `run` (`Ok(Err(...))`), or `Cancelled`.
pub fn grid_batches<E, F>(
    rows: &RowTable<'_>,
    layout: &GridLayout,
    plan: &SeriesPlan,
    batch: usize,
    buffers: Vec<&mut [f32]>,
    cancel: &AtomicBool,
    run: &F,
) -> Result<Result<(), E>, KernelError>
where
    E: Send,
    F: Fn(usize, usize, &[f32]) -> Result<(), E> + Sync,
{
    let series_size = layout.n_channels * layout.n_bins;
    if batch == 0 || buffers.iter().any(|b| b.len() < batch * series_size) {
        return Err(KernelError::Input(format!(
            "batch {batch}: every buffer must hold {batch} series of {series_size} values"
        )));
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let stop = || cancel.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed);
    let results: Vec<Result<(), E>> = std::thread::scope(|scope| {
        let workers: Vec<_> = buffers
            .into_iter()
            .enumerate()
            .map(|(index, buffer)| {
                let (next, failed, stop) = (&next, &failed, &stop);
                scope.spawn(move || {
                    let mut scratch = SeriesScratch::new(rows, layout);
                    loop {
                        let first = next.fetch_add(batch, Ordering::Relaxed);
                        if first >= plan.len() || stop() {
                            return Ok(());
                        }
                        let n = batch.min(plan.len() - first);
                        let out = &mut buffer[..n * series_size];
                        plan.fill(rows, layout, &mut scratch, first, out);
                        if let Err(err) = run(index, first, out) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(err);
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    if let Some(err) = results.into_iter().find_map(Result::err) {
        return Ok(Err(err));
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(KernelError::Cancelled);
    }
    Ok(Ok(()))
}

struct SeriesScratch {
    clear: BinSums,
    rebuilt: BinSums,
    s1: BinSums,
    seen: Vec<bool>,
    spans: Vec<Span>,
    means: Vec<f32>,    // [S2 feature, bin]
    s1_means: Vec<f32>, // [VV, VH, VH - VV; bin]
    /// Channels no row of this table feeds (features it lacks): zeros in every series.
    idle: Vec<usize>,
}

impl SeriesScratch {
    fn new(rows: &RowTable<'_>, layout: &GridLayout) -> Self {
        let (f, n_bins) = (rows.s2.len(), layout.n_bins);
        let mut fed: Vec<usize> = layout.s2_channels.clone();
        fed.extend([layout.s2_observed, layout.s2_reconstructed]);
        if rows.s1.is_some() {
            fed.extend(layout.s1_channels.iter().chain([&layout.s1_observed]));
        }
        SeriesScratch {
            idle: (0..layout.n_channels)
                .filter(|c| !fed.contains(c))
                .collect(),
            clear: BinSums::new(f, n_bins),
            rebuilt: BinSums::new(f, n_bins),
            s1: BinSums::new(3, n_bins),
            seen: vec![false; n_bins],
            spans: vec![Span::default(); n_bins],
            means: vec![0.0; f * n_bins],
            s1_means: vec![0.0; 3 * n_bins],
        }
    }

    /// Fills one series' `[n_channels, n_bins]` block from its parcel's rows and their
    /// `SeriesPlan::packed` entries: those of the series' year slot. Every value is written
    /// once (a feature the series never has as zeros): zeroing the whole block first cost a
    /// memset of the grid.
    fn fill(
        &mut self,
        rows: &RowTable<'_>,
        layout: &GridLayout,
        (parcel_rows, packed): (&[u32], &[u32]),
        slot: u32,
        out: &mut [f32],
    ) {
        let n_bins = layout.n_bins;
        zero_channels(out, &self.idle, n_bins);
        self.clear.clear();
        self.rebuilt.clear();
        self.s1.clear();
        let chunks = rows.s2[0].rows;
        for (&r, &entry) in parcel_rows.iter().zip(packed) {
            let bin = entry & BIN_MASK;
            if entry >> (BIN_BITS + KIND_BITS) != slot || bin == BIN_MASK {
                continue;
            }
            let bin = bin as usize;
            let at = || chunks.locate(r as usize);
            match ((entry >> BIN_BITS) & ((1 << KIND_BITS) - 1)) as u8 {
                KIND_S2_CLEAR => {
                    let at = at();
                    self.clear.add(bin, rows.s2.iter().map(|c| c.at(at)));
                }
                KIND_S2_REBUILT => {
                    let at = at();
                    self.rebuilt.add(bin, rows.s2.iter().map(|c| c.at(at)));
                }
                KIND_S1 => {
                    if let Some((vv, vh)) = rows.s1 {
                        let at = at();
                        let (vv, vh) = (vv.at(at), vh.at(at));
                        self.s1.add(bin, [vv, vh, vh - vv].into_iter());
                    }
                }
                _ => {}
            }
        }

        // A bin takes its clear observations, else its reconstructed rows (flagged as such).
        for t in 0..n_bins {
            let clear = self.clear.rows[t] > 0;
            let rebuilt = !clear && self.rebuilt.rows[t] > 0;
            self.seen[t] = clear || rebuilt;
            out[layout.s2_observed * n_bins + t] = f32::from(u8::from(clear));
            out[layout.s2_reconstructed * n_bins + t] = f32::from(u8::from(rebuilt));
            for f in 0..rows.s2.len() {
                self.means[f * n_bins + t] = match (clear, rebuilt) {
                    (true, _) => self.clear.mean(f, t),
                    (_, true) => self.rebuilt.mean(f, t),
                    _ => f32::NAN,
                };
            }
        }
        if self.seen.iter().any(|&s| s) {
            spans(&self.seen, &mut self.spans);
            for (f, (&channel, &norm)) in layout.s2_channels.iter().zip(&layout.s2_norm).enumerate()
            {
                interpolate_into(
                    channel_of(out, channel, n_bins),
                    &self.means[f * n_bins..(f + 1) * n_bins],
                    &self.spans,
                    norm,
                );
            }
        } else {
            zero_channels(out, &layout.s2_channels, n_bins);
        }
        if rows.s1.is_some() {
            for t in 0..n_bins {
                self.seen[t] = self.s1.rows[t] > 0;
                out[layout.s1_observed * n_bins + t] = f32::from(u8::from(self.seen[t]));
                for f in 0..3 {
                    self.s1_means[f * n_bins + t] = self.s1.mean(f, t);
                }
            }
            if self.seen.iter().any(|&s| s) {
                spans(&self.seen, &mut self.spans);
                for (f, (&channel, &norm)) in
                    layout.s1_channels.iter().zip(&layout.s1_norm).enumerate()
                {
                    let means = &self.s1_means[f * n_bins..(f + 1) * n_bins];
                    interpolate_into(channel_of(out, channel, n_bins), means, &self.spans, norm);
                }
            } else {
                zero_channels(out, &layout.s1_channels, n_bins);
            }
        }
    }
}

/// Peaks of per-bin probabilities, practice by practice.
#[derive(Debug, Default, PartialEq)]
pub struct Peaks {
    pub series: Vec<i64>,
    pub practice: Vec<i64>,
    /// Fractional bin: the peak's bin refined by a parabola through its neighbours.
    pub bin: Vec<f64>,
    pub confidence: Vec<f64>,
}

/// Local maxima of `probability [series, practices, bins]` at or above `threshold`: a bin
/// above every bin up to `radius[practice]` before it and at least every bin up to that far
/// after it (one peak per plateau). Ordered by practice, then series, then bin.
pub fn decode_peaks(
    probability: &[f32],
    n_practices: usize,
    n_bins: usize,
    threshold: f32,
    radius: &[usize],
) -> Result<Peaks, KernelError> {
    let block = n_practices * n_bins;
    if block == 0 || !probability.len().is_multiple_of(block) || radius.len() != n_practices {
        return Err(KernelError::Input(format!(
            "probabilities of length {} are not [series, {n_practices}, {n_bins}] with \
             {} radii",
            probability.len(),
            radius.len()
        )));
    }
    // One batch of the model (up to `PEAK_CHUNK` series) is scanned on the calling thread:
    // handing it to the thread pool would cost more than the scan.
    const PEAK_CHUNK: usize = 1024;
    let series_of = |k: usize, r: usize, (chunk, series_block): (usize, &[f32])| {
        let mut found = Vec::new();
        for (i, series) in series_block.chunks_exact(block).enumerate() {
            let s = (chunk * PEAK_CHUNK + i) as i64;
            let p = &series[k * n_bins..(k + 1) * n_bins];
            for (b, &centre) in p.iter().enumerate() {
                let before = &p[b.saturating_sub(r)..b];
                let after = &p[(b + 1).min(n_bins)..(b + 1 + r).min(n_bins)];
                let is_peak = centre >= threshold
                    && before.iter().all(|&x| centre > x)
                    && after.iter().all(|&x| centre >= x);
                if is_peak {
                    found.push((s, b as f64 + f64::from(offset(p, b)), f64::from(centre)));
                }
            }
        }
        found
    };
    let mut peaks = Peaks::default();
    for (k, &r) in radius.iter().enumerate() {
        let found: Vec<Vec<(i64, f64, f64)>> = if probability.len() <= block * PEAK_CHUNK {
            vec![series_of(k, r, (0, probability))]
        } else {
            probability
                .par_chunks(block * PEAK_CHUNK)
                .enumerate()
                .map(|chunk| series_of(k, r, chunk))
                .collect()
        };
        for (s, bin, confidence) in found.into_iter().flatten() {
            peaks.series.push(s);
            peaks.practice.push(k as i64);
            peaks.bin.push(bin);
            peaks.confidence.push(confidence);
        }
    }
    Ok(peaks)
}

/// Sub-bin offset of a peak in [-0.5, 0.5]: the vertex of the parabola through the bins
/// around it (0 where the three are not concave), in f32 like the numpy original.
fn offset(p: &[f32], b: usize) -> f32 {
    let centre = p[b];
    let left = p[b.saturating_sub(1)];
    let right = p[(b + 1).min(p.len() - 1)];
    let curvature = left - 2.0 * centre + right;
    if curvature < 0.0 {
        (0.5 * (left - right) / curvature).clamp(-0.5, 0.5)
    } else {
        0.0
    }
}

/// For each event (parcel rank, time), the candidate row of the same parcel just before it
/// (latest time strictly earlier; of equal times the last in table order) and just after it
/// (earliest time at or after it; of equal times the first), -1 where there is none.
/// Only rows where `candidate` count.
pub fn nearest_rows(
    parcel: &[u32],
    micros: &[i64],
    candidate: &[bool],
    n_parcels: usize,
    event_parcel: &[u32],
    event_micros: &[i64],
) -> Result<(Vec<i64>, Vec<i64>), KernelError> {
    if micros.len() != parcel.len() || candidate.len() != parcel.len() {
        return Err(KernelError::Input("row arrays differ in length".into()));
    }
    if event_micros.len() != event_parcel.len() {
        return Err(KernelError::Input("event arrays differ in length".into()));
    }
    let out_of_range = parcel
        .iter()
        .chain(event_parcel)
        .find(|&&p| p as usize >= n_parcels);
    if let Some(&bad) = out_of_range {
        return Err(KernelError::Input(format!(
            "parcel rank {bad} out of range (n_parcels {n_parcels})"
        )));
    }
    // Only candidate rows are sorted into parcels (a counting sort, table order kept).
    let mut offsets = vec![0usize; n_parcels + 1];
    for (&p, _) in parcel.iter().zip(candidate).filter(|(_, &c)| c) {
        offsets[p as usize + 1] += 1;
    }
    for i in 0..n_parcels {
        offsets[i + 1] += offsets[i];
    }
    let mut cursor = offsets[..n_parcels].to_vec();
    let mut order = vec![0u32; offsets[n_parcels]];
    for (row, (&p, _)) in parcel
        .iter()
        .zip(candidate)
        .enumerate()
        .filter(|(_, (_, &c))| c)
    {
        order[cursor[p as usize]] = row as u32;
        cursor[p as usize] += 1;
    }
    Ok(event_parcel
        .par_iter()
        .zip(event_micros)
        .map(|(&p, &t)| {
            let (mut before, mut after) = (-1i64, -1i64);
            let (mut before_t, mut after_t) = (i64::MIN, i64::MAX);
            for &r in &order[offsets[p as usize]..offsets[p as usize + 1]] {
                let at = micros[r as usize];
                if at < t && (before < 0 || at >= before_t) {
                    (before, before_t) = (i64::from(r), at);
                } else if at >= t && (after < 0 || at < after_t) {
                    (after, after_t) = (i64::from(r), at);
                }
            }
            (before, after)
        })
        .unzip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    #[test]
    fn ordinal_days_match_the_calendar() {
        assert_eq!(year_and_ordinal_day(0), (1970, 1));
        assert_eq!(year_and_ordinal_day(-1), (1969, 365));
        let month_days = |y: i64| {
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ]
        };
        for y in [1900i64, 1999, 2000, 2023, 2024, 2100] {
            let mut ordinal = 0;
            for (m, &n) in month_days(y).iter().enumerate() {
                for d in 1..=n {
                    ordinal += 1;
                    let days = days_from_civil(y, m as i64 + 1, d);
                    assert_eq!(year_and_ordinal_day(days), (y as i32, ordinal));
                }
            }
        }
    }

    #[test]
    fn parcel_groups_in_pieces_match_a_stable_sort() {
        let mut rng = Rng(9);
        for (n, n_parcels) in [(0usize, 3usize), (1, 1), (500, 1), (5000, 40), (3000, 5000)] {
            let parcel: Vec<u32> = (0..n).map(|_| rng.below(n_parcels as u64) as u32).collect();
            let mut expected: Vec<u32> = (0..n as u32).collect();
            expected.sort_by_key(|&r| parcel[r as usize]); // stable: table order kept
            let mut expected_offsets = vec![0usize; n_parcels + 1];
            for &p in &parcel {
                expected_offsets[p as usize + 1] += 1;
            }
            for p in 0..n_parcels {
                expected_offsets[p + 1] += expected_offsets[p];
            }
            let value = |row: usize| row as u64 * 3 + 1;
            let expected_values: Vec<u64> = expected.iter().map(|&r| value(r as usize)).collect();
            for pieces in [1, 2, 3, 16, n.max(1)] {
                let (order, offsets, values) = group_by_parcel(&parcel, n_parcels, value, pieces);
                assert_eq!(order, expected, "n {n}, pieces {pieces}");
                assert_eq!(offsets, expected_offsets);
                assert_eq!(values, expected_values);
            }
        }
    }

    #[test]
    fn nearest_rows_match_a_scan_of_all_rows() {
        let mut rng = Rng(13);
        let (n, n_parcels, n_events) = (20_000usize, 50usize, 2000usize);
        let parcel: Vec<u32> = (0..n).map(|_| rng.below(n_parcels as u64) as u32).collect();
        let micros: Vec<i64> = (0..n).map(|_| rng.below(300) as i64).collect();
        let candidate: Vec<bool> = (0..n).map(|_| rng.below(4) > 0).collect();
        let event_parcel: Vec<u32> = (0..n_events)
            .map(|_| rng.below(n_parcels as u64) as u32)
            .collect();
        let event_micros: Vec<i64> = (0..n_events).map(|_| rng.below(320) as i64 - 10).collect();
        let (before, after) = nearest_rows(
            &parcel,
            &micros,
            &candidate,
            n_parcels,
            &event_parcel,
            &event_micros,
        )
        .unwrap();
        for e in 0..n_events {
            let rows = (0..n).filter(|&r| candidate[r] && parcel[r] == event_parcel[e]);
            let t = event_micros[e];
            // latest before (of equal times the last row), earliest after (the first row)
            let b = rows
                .clone()
                .filter(|&r| micros[r] < t)
                .max_by_key(|&r| (micros[r], r));
            let a = rows
                .filter(|&r| micros[r] >= t)
                .min_by_key(|&r| (micros[r], r));
            assert_eq!(before[e], b.map_or(-1, |r| r as i64), "event {e}");
            assert_eq!(after[e], a.map_or(-1, |r| r as i64), "event {e}");
        }
    }

    fn layout() -> GridLayout {
        GridLayout {
            start_doy: 1,
            bin_days: 1,
            n_bins: 6,
            n_channels: 6,
            s2_channels: vec![0],
            s2_norm: vec![(0.0, 1.0)],
            s2_observed: 1,
            s2_reconstructed: 2,
            s1_channels: [3, 4, 5],
            s1_norm: [(0.0, 1.0); 3],
            s1_observed: 5,
        }
    }

    #[test]
    fn gaps_are_interpolated_and_reconstructed_rows_fill_only_empty_bins() {
        let day = |d: i64| d * MICROS_PER_DAY; // 1970: day d is ordinal d + 1
        let chunks = RowChunks::new(&[2, 3]).unwrap();
        let rows = RowTable {
            parcel: &[0, 0, 0, 0, 0],
            n_parcels: 1,
            micros: &[day(1), day(1), day(3), day(3), day(5)],
            kind: &[
                KIND_S2_CLEAR,
                KIND_S2_CLEAR,
                KIND_S2_REBUILT,
                KIND_OTHER,
                KIND_S2_REBUILT,
            ],
            tile: &[4, 2, NO_TILE, 1, 3],
            // row 4's value is null; rows in two chunks
            s2: vec![Floats {
                chunks: &[
                    Chunk {
                        values: &[0.2, 0.4],
                        validity: None,
                    },
                    Chunk {
                        values: &[0.9, 5.0, 7.0],
                        validity: Some((&[0b1101_1110, 0], 3)),
                    },
                ],
                rows: &chunks,
            }],
            s1: None,
        };
        let grid = series_grid(&rows, &layout()).unwrap();
        assert_eq!(
            (grid.parcel.clone(), grid.year.clone(), grid.tile.clone()),
            (vec![0], vec![1970], vec![1])
        );
        let v = &grid.values;
        // bin 1: mean of the two clear rows; bin 3: reconstructed; bin 5: rebuilt but NaN
        let ndvi: Vec<f32> = v[0..6].to_vec();
        assert!((ndvi[1] - 0.3).abs() < 1e-6 && (ndvi[3] - 0.9).abs() < 1e-6);
        assert!((ndvi[2] - 0.6).abs() < 1e-6, "{ndvi:?}");
        assert_eq!(ndvi[0], ndvi[1]);
        assert_eq!(ndvi[5], 0.0); // NaN after the last finite value: neutral
        assert_eq!(&v[6..12], &[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(&v[12..18], &[0.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
    }

    fn dense(values: &[f64]) -> [Chunk<'_>; 1] {
        [Chunk {
            values,
            validity: None,
        }]
    }

    #[test]
    fn rows_are_classified_as_polars_compares() {
        let nan = f64::NAN;
        // rows: clear S2, cloudy S2, NaN valid fraction, null valid fraction, rebuilt,
        // S2 without NDVI, S1, S1 without VH, unknown sensor
        let valid = [Chunk {
            values: &[0.9, 0.2, nan, 0.9, 0.1, 0.9, 1.0, 1.0, 1.0],
            validity: Some((&[0b1111_0111, 0b1], 0)),
        }];
        let ndvi = [0.5, 0.5, 0.5, 0.5, 0.5, nan, nan, nan, 0.5];
        let vv = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -15.0, -15.0, 0.0];
        let vh = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -20.0, nan, 0.0];
        let (ndvi, vv, vh) = (dense(&ndvi), dense(&vv), dense(&vh));
        let one = RowChunks::new(&[9]).unwrap();
        let dense = |chunks| Floats { chunks, rows: &one };
        let codes = RowCodes {
            sensor: &[1, 1, 1, 1, 1, 1, 2, 2, 0],
            source: &[1, 1, 1, 1, 2, 1, 1, 1, 1],
            valid_fraction: dense(&valid),
            ndvi: dense(&ndvi),
            s1: Some((dense(&vv), dense(&vh))),
        };
        let (kind, evidence) = row_kinds(&codes, 0.5, 0.5).unwrap();
        let (c, r, s, o) = (KIND_S2_CLEAR, KIND_S2_REBUILT, KIND_S1, KIND_OTHER);
        assert_eq!(kind, vec![c, o, c, o, r, o, s, o, o]);
        let yes = [true, false, true, false, false, false, false, false, false];
        assert_eq!(evidence, yes.to_vec());
    }

    /// A tiny deterministic generator for random test tables.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random chunk lengths (some empty) adding up to `n`.
    fn random_cuts(rng: &mut Rng, n: usize) -> Vec<usize> {
        let mut lengths = Vec::new();
        let mut left = n;
        while left > 0 {
            let len = match rng.below(4) {
                0 => 0,
                1 => rng.below(5) as usize,
                _ => rng.below(9000) as usize,
            }
            .min(left);
            lengths.push(len);
            left -= len;
        }
        lengths.push(0);
        lengths
    }

    #[test]
    fn rows_are_located_in_their_chunk_as_a_linear_scan_finds_it() {
        let mut rng = Rng(7);
        for n in [1usize, 5, 4096, 4097, 30_000] {
            let lengths = random_cuts(&mut rng, n);
            let chunks = RowChunks::new(&lengths).unwrap();
            assert_eq!(chunks.len(), n);
            let mut expected = Vec::new();
            for (c, &len) in lengths.iter().enumerate() {
                expected.extend((0..len).map(|i| (c, i)));
            }
            let found: Vec<_> = (0..n).map(|r| chunks.locate(r)).collect();
            assert_eq!(found, expected, "lengths {lengths:?}");
        }
    }

    /// A random float column cut as `lengths`: values (some NaN or infinite) and, in some
    /// chunks, a bitmap at a random bit offset with some nulls.
    struct RandomColumn {
        values: Vec<Vec<f64>>,
        bits: Vec<Option<(Vec<u8>, usize)>>,
    }

    impl RandomColumn {
        fn new(rng: &mut Rng, lengths: &[usize]) -> Self {
            let mut column = RandomColumn {
                values: vec![],
                bits: vec![],
            };
            for &len in lengths {
                let value = |rng: &mut Rng| match rng.below(20) {
                    0 => f64::NAN,
                    1 => f64::INFINITY,
                    _ => rng.below(1000) as f64 / 1000.0 - 0.2,
                };
                column.values.push((0..len).map(|_| value(rng)).collect());
                column.bits.push(if rng.below(2) == 0 {
                    let offset = rng.below(8) as usize;
                    let bits = (0..(offset + len).div_ceil(8) + 1)
                        .map(|_| (rng.next() | rng.next()) as u8)
                        .collect();
                    Some((bits, offset))
                } else {
                    None
                });
            }
            column
        }

        fn chunks(&self) -> Vec<Chunk<'_>> {
            self.values
                .iter()
                .zip(&self.bits)
                .map(|(values, bits)| Chunk {
                    values,
                    validity: bits.as_ref().map(|(b, o)| (b.as_slice(), *o)),
                })
                .collect()
        }
    }

    #[test]
    fn row_kinds_chunk_by_chunk_match_a_row_by_row_reference() {
        let mut rng = Rng(11);
        let n = 70_000;
        let lengths = random_cuts(&mut rng, n);
        let index = RowChunks::new(&lengths).unwrap();
        let columns: Vec<_> = (0..4)
            .map(|_| RandomColumn::new(&mut rng, &lengths))
            .collect();
        let chunks: Vec<_> = columns.iter().map(RandomColumn::chunks).collect();
        let floats: Vec<_> = chunks
            .iter()
            .map(|c| Floats {
                chunks: c,
                rows: &index,
            })
            .collect();
        let sensor: Vec<u8> = (0..n).map(|_| rng.below(3) as u8).collect();
        let source: Vec<u8> = (0..n).map(|_| rng.below(3) as u8).collect();
        let codes = RowCodes {
            sensor: &sensor,
            source: &source,
            valid_fraction: floats[0],
            ndvi: floats[1],
            s1: Some((floats[2], floats[3])),
        };
        let (kind, evidence) = row_kinds(&codes, 0.5, 0.3).unwrap();
        let at_least = |r: usize, t: f64| {
            let v = floats[0].get(r);
            floats[0].is_valid(r) && (v.is_nan() || v >= t)
        };
        for r in 0..n {
            let ndvi = floats[1].get(r);
            let s2 = sensor[r] == SENSOR_S2 && ndvi.is_finite();
            let s1 = floats[2].get(r).is_finite() && floats[3].get(r).is_finite();
            let expected = match () {
                () if s2 && source[r] == SOURCE_REBUILT => KIND_S2_REBUILT,
                () if s2 && at_least(r, 0.5) => KIND_S2_CLEAR,
                () if sensor[r] == SENSOR_S1 && s1 => KIND_S1,
                () => KIND_OTHER,
            };
            assert_eq!(kind[r], expected, "row {r}");
            let clear = sensor[r] == SENSOR_S2 && source[r] == SOURCE_OBSERVED;
            assert_eq!(evidence[r], clear && at_least(r, 0.3) && !ndvi.is_nan());
        }
        // columns cut differently are refused
        let other = RowChunks::new(&[n]).unwrap();
        let whole = RandomColumn::new(&mut rng, &[n]);
        let whole_chunks = whole.chunks();
        let cut_otherwise = RowCodes {
            ndvi: Floats {
                chunks: &whole_chunks,
                rows: &other,
            },
            ..codes
        };
        assert!(row_kinds(&cut_otherwise, 0.5, 0.3).is_err());
    }

    #[test]
    fn batches_fill_the_same_grid_as_the_whole_table() {
        let mut rng = Rng(5);
        let n = 20_000;
        let n_parcels = 300;
        let lengths = random_cuts(&mut rng, n);
        let index = RowChunks::new(&lengths).unwrap();
        let columns: Vec<_> = (0..4)
            .map(|_| RandomColumn::new(&mut rng, &lengths))
            .collect();
        let chunks: Vec<_> = columns.iter().map(RandomColumn::chunks).collect();
        let floats: Vec<_> = chunks
            .iter()
            .map(|c| Floats {
                chunks: c,
                rows: &index,
            })
            .collect();
        let parcel: Vec<u32> = (0..n).map(|_| rng.below(n_parcels) as u32).collect();
        // two years and a bit, so parcels have one to three series and rows fall off the grid
        let micros: Vec<i64> = (0..n)
            .map(|_| rng.below(800) as i64 * MICROS_PER_DAY + rng.below(1000) as i64)
            .collect();
        let kind: Vec<u8> = (0..n).map(|_| rng.below(5) as u8).collect();
        let tile: Vec<u32> = (0..n)
            .map(|_| [NO_TILE, 0, 1, 2][rng.below(4) as usize])
            .collect();
        let rows = RowTable {
            parcel: &parcel,
            n_parcels: n_parcels as usize,
            micros: &micros,
            kind: &kind,
            tile: &tile,
            s2: vec![floats[0], floats[1]],
            s1: Some((floats[2], floats[3])),
        };
        let layout = GridLayout {
            start_doy: 30,
            bin_days: 5,
            n_bins: 64,
            n_channels: 8,
            s2_channels: vec![0, 1],
            s2_norm: vec![(0.5, 0.3), (0.1, 0.2)],
            s2_observed: 2,
            s2_reconstructed: 3,
            s1_channels: [4, 5, 6],
            s1_norm: [(0.0, 1.0), (0.2, 2.0), (-0.1, 0.5)],
            s1_observed: 7,
        };
        let whole = series_grid(&rows, &layout).unwrap();
        let size = layout.n_channels * layout.n_bins;
        assert!(whole.parcel.len() > n_parcels as usize);
        let plan = SeriesPlan::new(&rows, &layout).unwrap();
        assert_eq!(
            (&plan.parcel, &plan.year, &plan.tile),
            (&whole.parcel, &whole.year, &whole.tile)
        );
        for (batch, threads) in [(1, 1), (7, 2), (64, 3), (5000, 2)] {
            let mut buffers = vec![vec![f32::NAN; batch * size]; threads];
            let got = std::sync::Mutex::new(vec![f32::NAN; whole.values.len()]);
            let run = |_: usize, first: usize, values: &[f32]| -> Result<(), ()> {
                got.lock().unwrap()[first * size..first * size + values.len()]
                    .copy_from_slice(values);
                Ok(())
            };
            let slices = buffers.iter_mut().map(Vec::as_mut_slice).collect();
            let cancel = AtomicBool::new(false);
            let done = grid_batches(&rows, &layout, &plan, batch, slices, &cancel, &run);
            assert_eq!(done, Ok(Ok(())));
            let got = got.into_inner().unwrap();
            // bitwise, NaN included
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&whole.values), "batch {batch}");
        }
        // the first error stops the batches; a small buffer is refused; cancel stops them
        let calls = AtomicUsize::new(0);
        let failing = |_: usize, first: usize, _: &[f32]| {
            calls.fetch_add(1, Ordering::Relaxed);
            if first >= 10 {
                Err(first)
            } else {
                Ok(())
            }
        };
        let mut buffer = vec![0.0; 10 * size];
        let cancel = AtomicBool::new(false);
        let done = grid_batches(
            &rows,
            &layout,
            &plan,
            10,
            vec![&mut buffer],
            &cancel,
            &failing,
        );
        assert_eq!((done, calls.load(Ordering::Relaxed)), (Ok(Err(10)), 2));
        let small = grid_batches(
            &rows,
            &layout,
            &plan,
            11,
            vec![&mut buffer],
            &cancel,
            &failing,
        );
        assert!(small.is_err());
        cancel.store(true, Ordering::Relaxed);
        let stopped = grid_batches(
            &rows,
            &layout,
            &plan,
            10,
            vec![&mut buffer],
            &cancel,
            &failing,
        );
        assert!(matches!(stopped, Err(KernelError::Cancelled)));
        // channels no row feeds (no S1 columns, a ninth channel) are zeros, whatever the
        // buffer held before
        let no_s1 = RowTable {
            s2: rows.s2.clone(),
            s1: None,
            ..rows
        };
        let wider = GridLayout {
            n_channels: 9,
            ..layout.clone()
        };
        let whole = series_grid(&no_s1, &wider).unwrap();
        let size = wider.n_channels * wider.n_bins;
        let plan = SeriesPlan::new(&no_s1, &wider).unwrap();
        let mut buffer = vec![f32::NAN; 64 * size];
        let got = std::sync::Mutex::new(vec![f32::NAN; whole.values.len()]);
        let run = |_: usize, first: usize, values: &[f32]| -> Result<(), ()> {
            got.lock().unwrap()[first * size..first * size + values.len()].copy_from_slice(values);
            Ok(())
        };
        let cancel = AtomicBool::new(false);
        let done = grid_batches(&no_s1, &wider, &plan, 64, vec![&mut buffer], &cancel, &run);
        assert_eq!(done, Ok(Ok(())));
        let got = got.into_inner().unwrap();
        assert!(got
            .iter()
            .zip(&whole.values)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        for series in got.chunks_exact(size) {
            assert!(series[4 * wider.n_bins..].iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn peaks_take_one_per_plateau_and_refine_the_bin() {
        let p = [0.1f32, 0.6, 0.9, 0.6, 0.1, 0.7, 0.7, 0.2];
        let peaks = decode_peaks(&p, 1, 8, 0.5, &[1]).unwrap();
        assert_eq!(peaks.series, vec![0, 0]);
        assert_eq!(peaks.bin[0], 2.0);
        assert_eq!(peaks.bin[1], 5.0 + f64::from(offset(&p, 5)));
        assert!(peaks.bin[1] > 5.0);
        assert!(decode_peaks(&p, 2, 8, 0.5, &[1, 1]).is_err());
    }

    #[test]
    fn peaks_of_many_series_are_those_of_each_series() {
        let mut rng = Rng(17);
        let (n_series, n_practices, n_bins) = (2500usize, 3usize, 20usize);
        let p: Vec<f32> = (0..n_series * n_practices * n_bins)
            .map(|_| rng.below(1000) as f32 / 1000.0)
            .collect();
        let radius = [1, 2, 3];
        let all = decode_peaks(&p, n_practices, n_bins, 0.6, &radius).unwrap();
        // series one at a time, then ordered by practice, then series (a stable sort)
        let mut expected = vec![];
        for s in 0..n_series {
            let block = &p[s * n_practices * n_bins..(s + 1) * n_practices * n_bins];
            let one = decode_peaks(block, n_practices, n_bins, 0.6, &radius).unwrap();
            for i in 0..one.series.len() {
                expected.push((one.practice[i], s as i64, one.bin[i], one.confidence[i]));
            }
        }
        expected.sort_by_key(|e| e.0);
        let got: Vec<_> = (0..all.series.len())
            .map(|i| {
                (
                    all.practice[i],
                    all.series[i],
                    all.bin[i],
                    all.confidence[i],
                )
            })
            .collect();
        assert!(got.len() > n_series);
        assert_eq!(got, expected);
    }

    #[test]
    fn nearest_rows_are_strictly_before_and_at_or_after() {
        let (before, after) = nearest_rows(
            &[0, 0, 0, 1, 0],
            &[10, 20, 30, 20, 20],
            &[true, true, true, true, false],
            2,
            &[0, 0, 1],
            &[20, 5, 40],
        )
        .unwrap();
        assert_eq!(before, vec![0, -1, 3]);
        assert_eq!(after, vec![1, 0, -1]);
    }
}
