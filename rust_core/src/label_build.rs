//! Builds a [`LabelRaster`] from parcel polygons: pixel-centre labels (see `rasterize`) and,
//! on request, exact coverage fractions (see `coverage`), of which only the boundary is kept
//! (cells whose fraction is not their pixel-centre membership; see [`LabelRaster`]). A pixel
//! whose centre is in the parcel but whose covered fraction is below
//! [`MIN_FRACTION`](crate::coverage::MIN_FRACTION) (a needle of a polygon) is listed with that
//! fraction, the float noise level, rather than dropped.
//!
//! Parcels are processed in chunks: runs of consecutive parcels ("batches") are computed in
//! parallel (rayon), then written in parcel order, so the result does not depend on the thread
//! count. Batch buffers live across chunks: freeing and re-faulting them per chunk made the
//! kernel's page zeroing the largest cost of the build. Where
//! parcels overlap, the first parcel in input order keeps the pixel-centre label; coverage is
//! per parcel and keeps the overlap in both. Parts outside the grid are clipped; a parcel
//! wholly outside simply gets no pixels.

use rayon::prelude::*;

use crate::coverage::{coverage_cells, MIN_FRACTION};
use crate::grid::Grid;
use crate::label::{LabelRaster, NO_PARCEL};
use crate::polygons::{LabelError, PixelTransform, RaggedPolygons};
use crate::rasterize::{centre_spans, Span};

/// Parcels per chunk: enough to keep the threads busy, few enough to bound the memory of the
/// results waiting to be merged and to answer a cancellation quickly.
const CHUNK: usize = 4096;
/// Batches per chunk and thread, for load balance between big and small parcels.
const BATCHES_PER_THREAD: usize = 4;

/// Builds the label raster of `polygons` (one geometry per parcel, already in the grid's CRS)
/// on `grid`; coverage fractions too when `with_coverage`.
pub fn build_label_raster(
    grid: Grid,
    coords: &[f64],
    ring_offsets: &[i64],
    polygon_offsets: &[i64],
    geometry_offsets: &[i64],
    with_coverage: bool,
) -> Result<LabelRaster, LabelError> {
    let polygons = RaggedPolygons {
        coords,
        ring_offsets,
        polygon_offsets,
        geometry_offsets,
    };
    build_label_raster_cancellable(grid, &polygons, with_coverage, &mut || false)
}

/// As [`build_label_raster`], calling `cancelled` between chunks of parcels and stopping with
/// [`LabelError::Cancelled`] when it returns true (Ctrl-C from Python).
pub fn build_label_raster_cancellable(
    grid: Grid,
    polygons: &RaggedPolygons<'_>,
    with_coverage: bool,
    cancelled: &mut dyn FnMut() -> bool,
) -> Result<LabelRaster, LabelError> {
    let to_pixel = PixelTransform::new(&grid)?;
    check_sizes(&grid, polygons.n_parcels())?;
    polygons.validate()?;
    let n_parcels = polygons.n_parcels();

    // The output of a full tile is GBs, and the kernel zeroing its pages on first touch costs
    // as much as the geometry. So: capacities are generous guesses (untouched capacity costs
    // address space, not memory), and pages are first touched in parallel (`prefault`,
    // `append_parallel`) rather than by the sequential merge below. (Transparent huge pages
    // were tried: slower and erratic here.)
    let mut labels = vec![NO_PARCEL; grid.len()];
    labels
        .par_chunks_mut(PREFAULT_BLOCK)
        .for_each(|block| block.fill(NO_PARCEL));
    let mut offsets = Vec::with_capacity(n_parcels + 1);
    let mut pixels = Vec::with_capacity(grid.len());
    let mut cov_offsets = Vec::with_capacity(n_parcels + 1);
    // Boundary cells only: a few per cent of the grid for field-sized parcels.
    let cov_guess = if with_coverage { grid.len() / 4 } else { 0 };
    let mut cov_pixels = Vec::with_capacity(cov_guess);
    let mut cov_fraction = Vec::with_capacity(cov_guess);
    offsets.push(0u64);
    cov_offsets.push(0u64);

    let n_batches = rayon::current_num_threads() * BATCHES_PER_THREAD;
    let mut batches: Vec<Batch> = (0..n_batches).map(|_| Batch::default()).collect();
    for start in (0..n_parcels).step_by(CHUNK) {
        if cancelled() {
            return Err(LabelError::Cancelled);
        }
        let end = (start + CHUNK).min(n_parcels);
        let per_batch = (end - start).div_ceil(n_batches);
        batches.par_iter_mut().enumerate().for_each(|(k, batch)| {
            let first = (start + k * per_batch).min(end);
            let last = (first + per_batch).min(end);
            batch.fill(first..last, polygons, &to_pixel, &grid, with_coverage);
        });
        // Overlapping spans count twice: cap at what the grid can still hold.
        let room = grid.len() - pixels.len();
        let new_pixels: usize = batches.iter().map(Batch::span_pixels).sum();
        prefault(&mut pixels, new_pixels.min(room));
        for batch in &batches {
            for (k, p) in batch.parcels.clone().enumerate() {
                let label = p as u32 + 1;
                for span in batch.parcel_spans(k) {
                    let row = span.row as usize * grid.width;
                    let run = row + span.col_start as usize..row + span.col_end as usize;
                    let slots = &mut labels[run.clone()];
                    if slots.iter().all(|&l| l == NO_PARCEL) {
                        // The common case, no overlap: vectorised fill.
                        slots.fill(label);
                        pixels.extend(run.start as u32..run.end as u32);
                        continue;
                    }
                    for (i, l) in slots.iter_mut().enumerate() {
                        if *l == NO_PARCEL {
                            *l = label;
                            pixels.push((run.start + i) as u32);
                        }
                    }
                }
                offsets.push(pixels.len() as u64);
            }
        }
        if with_coverage {
            // The chunk's pixel-centre members are final now (later parcels never take a
            // labelled pixel): keep only the cells whose weight they do not already give.
            let (offsets, pixels) = (&offsets, &pixels);
            batches.par_iter_mut().for_each(|batch| {
                batch.keep_boundary(|p| &pixels[offsets[p] as usize..offsets[p + 1] as usize]);
            });
            append_parallel(&mut cov_pixels, batches.iter().map(|b| &b.kept_pixels[..]));
            append_parallel(
                &mut cov_fraction,
                batches.iter().map(|b| &b.kept_fraction[..]),
            );
        }
        for batch in &batches {
            for k in 0..batch.parcels.len() {
                let last = *cov_offsets.last().expect("starts with 0");
                cov_offsets.push(last + batch.parcel_kept_len(k) as u64);
            }
        }
    }
    pixels.shrink_to_fit();
    cov_pixels.shrink_to_fit();
    cov_fraction.shrink_to_fit();
    Ok(LabelRaster {
        grid,
        n_parcels,
        labels,
        offsets,
        pixels,
        coverage: with_coverage,
        cov_offsets,
        cov_pixels,
        cov_fraction,
    })
}

/// Elements written per task when touching fresh memory in parallel.
const PREFAULT_BLOCK: usize = 1 << 18;

/// Reserves room for `additional` more elements and writes to that spare capacity in parallel,
/// so the page faults happen on all threads and the sequential pushes that follow find the
/// memory ready.
fn prefault<T: Copy + Default + Send>(buffer: &mut Vec<T>, additional: usize) {
    buffer.reserve(additional);
    buffer.spare_capacity_mut()[..additional]
        .par_chunks_mut(PREFAULT_BLOCK)
        .for_each(|block| block.iter_mut().for_each(|v| _ = v.write(T::default())));
}

/// Appends `parts` one after the other to `buffer`, copying them in parallel (which also
/// spreads the first touch of fresh pages over the threads).
fn append_parallel<'a, T: Copy + Send + Sync + 'a>(
    buffer: &mut Vec<T>,
    parts: impl Iterator<Item = &'a [T]>,
) {
    let parts: Vec<&[T]> = parts.collect();
    let total: usize = parts.iter().map(|p| p.len()).sum();
    buffer.reserve(total);
    let mut spare = &mut buffer.spare_capacity_mut()[..total];
    let mut targets = Vec::with_capacity(parts.len());
    for part in &parts {
        let (head, tail) = spare.split_at_mut(part.len());
        targets.push(head);
        spare = tail;
    }
    targets
        .into_par_iter()
        .zip(parts)
        .for_each(|(target, part)| {
            for (slot, &value) in target.iter_mut().zip(part) {
                slot.write(value);
            }
        });
    let len = buffer.len() + total;
    // SAFETY: the `total` elements after the old length were all written just above.
    unsafe { buffer.set_len(len) };
}

fn check_sizes(grid: &Grid, n_parcels: usize) -> Result<(), LabelError> {
    let too_large = LabelError::GridTooLarge {
        height: grid.height,
        width: grid.width,
    };
    match grid.height.checked_mul(grid.width) {
        Some(n) if n as u64 <= u64::from(u32::MAX) + 1 => {}
        _ => return Err(too_large),
    }
    if n_parcels >= u32::MAX as usize {
        return Err(LabelError::TooManyParcels(n_parcels));
    }
    Ok(())
}

/// What a run of consecutive parcels contributes, before overlaps with earlier parcels are
/// resolved: parcel `parcels.start + k` has spans `spans[span_ends[k - 1]..span_ends[k]]` and
/// coverage cells likewise by `cov_ends` (with an implicit 0 before the first parcel); after
/// the overlaps are resolved, `kept_*` hold the boundary part of the coverage (by `kept_ends`).
#[derive(Default)]
struct Batch {
    parcels: std::ops::Range<usize>,
    spans: Vec<Span>,
    span_ends: Vec<usize>,
    cov_pixels: Vec<u32>,
    cov_fraction: Vec<f64>,
    cov_ends: Vec<usize>,
    kept_pixels: Vec<u32>,
    kept_fraction: Vec<f64>,
    kept_ends: Vec<usize>,
}

impl Batch {
    /// Replaces the contents with those of `parcels`, keeping the buffers' memory.
    fn fill(
        &mut self,
        parcels: std::ops::Range<usize>,
        polygons: &RaggedPolygons<'_>,
        to_pixel: &PixelTransform,
        grid: &Grid,
        with_coverage: bool,
    ) {
        self.parcels = parcels.clone();
        self.spans.clear();
        self.span_ends.clear();
        self.cov_pixels.clear();
        self.cov_fraction.clear();
        self.cov_ends.clear();
        self.kept_pixels.clear();
        self.kept_fraction.clear();
        self.kept_ends.clear();
        for p in parcels {
            let edges = polygons.parcel_edges(p, to_pixel);
            centre_spans(&edges, grid, &mut self.spans);
            self.span_ends.push(self.spans.len());
            if with_coverage {
                coverage_cells(&edges, grid, &mut self.cov_pixels, &mut self.cov_fraction);
            }
            self.cov_ends.push(self.cov_pixels.len());
        }
    }

    fn parcel_spans(&self, k: usize) -> &[Span] {
        let start = if k == 0 { 0 } else { self.span_ends[k - 1] };
        &self.spans[start..self.span_ends[k]]
    }

    /// Keeps, per parcel, the coverage cells whose fraction differs from the parcel's final
    /// pixel-centre membership (`members(p)`, ascending), and lists members the coverage missed
    /// with [`MIN_FRACTION`]; both lists are row-major, so one merge walk does it.
    fn keep_boundary<'m>(&mut self, members: impl Fn(usize) -> &'m [u32]) {
        let mut start = 0;
        for (k, p) in self.parcels.clone().enumerate() {
            let end = self.cov_ends[k];
            let (cells, fractions) = (&self.cov_pixels[start..end], &self.cov_fraction[start..end]);
            let own = members(p);
            let mut m = 0;
            for (&c, &f) in cells.iter().zip(fractions) {
                while m < own.len() && own[m] < c {
                    self.kept_pixels.push(own[m]);
                    self.kept_fraction.push(MIN_FRACTION);
                    m += 1;
                }
                let member = m < own.len() && own[m] == c;
                m += usize::from(member);
                if !(member && f == 1.0) {
                    self.kept_pixels.push(c);
                    self.kept_fraction.push(f);
                }
            }
            self.kept_pixels.extend_from_slice(&own[m..]);
            self.kept_fraction
                .resize(self.kept_pixels.len(), MIN_FRACTION);
            self.kept_ends.push(self.kept_pixels.len());
            start = end;
        }
    }

    fn parcel_kept_len(&self, k: usize) -> usize {
        if self.kept_ends.is_empty() {
            return 0; // built without coverage
        }
        let start = if k == 0 { 0 } else { self.kept_ends[k - 1] };
        self.kept_ends[k] - start
    }

    /// Pixels in all spans: at least the pixels the batch's parcels will keep.
    fn span_pixels(&self) -> usize {
        self.spans
            .iter()
            .map(|s| (s.col_end - s.col_start) as usize)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: [f64; 6] = [10.0, 0.0, 0.0, 0.0, -10.0, 100.0];

    /// Axis-aligned boxes in world coordinates (x0, y0, x1, y1), one parcel each.
    fn boxes(b: &[(f64, f64, f64, f64)]) -> (Vec<f64>, Vec<i64>, Vec<i64>, Vec<i64>) {
        let mut coords = Vec::new();
        for &(x0, y0, x1, y1) in b {
            coords.extend_from_slice(&[x0, y0, x1, y0, x1, y1, x0, y1, x0, y0]);
        }
        let n = b.len() as i64;
        let rings = (0..=n).map(|i| 5 * i).collect();
        let counts: Vec<i64> = (0..=n).collect();
        (coords, rings, counts.clone(), counts)
    }

    #[test]
    fn first_parcel_keeps_overlapping_pixels_and_csr_matches_labels() {
        let grid = Grid::new(10, 10, T);
        let (c, r, p, g) = boxes(&[(0.0, 100.0, 50.0, 50.0), (30.0, 80.0, 80.0, 30.0)]);
        let lr = build_label_raster(grid, &c, &r, &p, &g, true).unwrap();
        assert_eq!(lr.parcel_pixels(0).len(), 25);
        // Parcel 1 is 5x5 with a 2x3 overlap lost to parcel 0.
        assert_eq!(lr.parcel_pixels(1).len(), 25 - 6);
        assert_eq!(lr, {
            let mut rebuilt = LabelRaster::from_labels(grid, 2, lr.labels.clone());
            rebuilt.coverage = true;
            rebuilt.cov_offsets.clone_from(&lr.cov_offsets);
            rebuilt.cov_pixels.clone_from(&lr.cov_pixels);
            rebuilt.cov_fraction.clone_from(&lr.cov_fraction);
            rebuilt
        });
        // Coverage keeps the overlap for both parcels: parcel 1 lists the 6 cells it lost.
        assert_eq!(lr.full_coverage(1).0.len(), 25);
        assert_eq!(lr.parcel_coverage(1).0.len(), 6);
        assert_eq!(lr.parcel_coverage(1).1, [1.0; 6]);
        // Pixel-aligned boxes have no partial cell: nothing else is stored.
        assert!(lr.parcel_coverage(0).0.is_empty() && lr.has_coverage());
    }

    #[test]
    fn parcel_outside_the_grid_and_empty_parcel_get_nothing() {
        let grid = Grid::new(10, 10, T);
        let (c, r, p, mut g) = boxes(&[(500.0, 500.0, 600.0, 400.0)]);
        // Append an empty geometry (no polygons).
        g.push(*g.last().unwrap());
        let lr = build_label_raster(grid, &c, &r, &p, &g, true).unwrap();
        assert_eq!(lr.n_parcels, 2);
        assert!(lr.labels.iter().all(|&l| l == NO_PARCEL));
        assert_eq!(lr.offsets, vec![0, 0, 0]);
        assert_eq!(lr.cov_offsets, vec![0, 0, 0]);
    }

    #[test]
    fn same_result_with_and_without_coverage_for_labels() {
        let grid = Grid::new(10, 10, T);
        let (c, r, p, g) = boxes(&[(3.0, 97.0, 47.0, 52.0)]);
        let with = build_label_raster(grid, &c, &r, &p, &g, true).unwrap();
        let without = build_label_raster(grid, &c, &r, &p, &g, false).unwrap();
        assert_eq!(with.labels, without.labels);
        assert!(with.has_coverage() && !without.has_coverage());
        assert_eq!(without.cov_offsets, vec![0, 0]);
        let area: f64 = with.full_coverage(0).1.iter().sum();
        assert!((area - 44.0 * 45.0 / 100.0).abs() < 1e-9);
        // Only the partial cells are stored: the ring of 16 boundary cells of the 5 x 5 box.
        assert!(with.cov_fraction.iter().all(|&f| f < 1.0));
        assert_eq!(with.cov_pixels.len(), 16);
    }

    #[test]
    fn a_pixel_whose_centre_a_needle_crosses_keeps_a_noise_level_weight() {
        // A triangle 2e-14 wide through the centre of pixel 0: a member with a covered area
        // below MIN_FRACTION, which the coverage alone would drop.
        let grid = Grid::new(2, 2, [1.0, 0.0, 0.0, 0.0, -1.0, 2.0]);
        let (left, right) = (0.5 - 1e-14, 0.5 + 1e-14);
        let coords = [left, 2.0, right, 2.0, 0.5, 1.4, left, 2.0];
        let lr = build_label_raster(grid, &coords, &[0, 4], &[0, 1], &[0, 1], true).unwrap();
        assert_eq!(lr.parcel_pixels(0), &[0]);
        assert_eq!(lr.parcel_coverage(0), (&[0u32][..], &[MIN_FRACTION][..]));
    }

    #[test]
    fn oversized_grid_and_rotation_are_errors() {
        let (c, r, p, g) = boxes(&[(0.0, 10.0, 10.0, 0.0)]);
        let huge = Grid::new(70_000, 70_000, T);
        let err = build_label_raster(huge, &c, &r, &p, &g, false).unwrap_err();
        assert!(matches!(err, LabelError::GridTooLarge { .. }), "{err}");
        let rotated = Grid::new(10, 10, [10.0, 1.0, 0.0, 0.0, -10.0, 100.0]);
        let err = build_label_raster(rotated, &c, &r, &p, &g, false).unwrap_err();
        assert!(err.to_string().contains("rotated"), "{err}");
    }

    #[test]
    fn cancellation_stops_the_build() {
        let grid = Grid::new(10, 10, T);
        let (c, r, p, g) = boxes(&[(0.0, 10.0, 10.0, 0.0)]);
        let polys = RaggedPolygons {
            coords: &c,
            ring_offsets: &r,
            polygon_offsets: &p,
            geometry_offsets: &g,
        };
        let err = build_label_raster_cancellable(grid, &polys, false, &mut || true).unwrap_err();
        assert!(matches!(err, LabelError::Cancelled));
    }
}
