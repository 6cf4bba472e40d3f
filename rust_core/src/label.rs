//! The parcel label raster: which parcel each pixel belongs to, built once per
//! (grid, parcel set) and reused for every acquisition on that grid.

use crate::grid::Grid;

/// Label value of a pixel that belongs to no parcel.
pub const NO_PARCEL: u32 = 0;

/// Parcel membership of every pixel of a grid.
///
/// * `labels[row * width + col]` is `NO_PARCEL` or `p + 1` for parcel index `p` (pixel-centre rule).
/// * `offsets`/`pixels` index the same membership by parcel (CSR): parcel `p` owns the pixels
///   `pixels[offsets[p]..offsets[p + 1]]`, row-major indices in ascending order. This is what the
///   zonal pass and the pixel sets iterate over.
/// * coverage (when `coverage` is set): the exact fraction of each cell's area the polygon
///   covers, as exactextract computes it, for coverage-weighted statistics. Stored sparsely:
///   `cov_offsets`/`cov_pixels`/`cov_fraction` list, per parcel in row-major order, the cells
///   whose fraction `f` (0 < f <= 1) is not their pixel-centre membership: the parcel's boundary
///   cells, and cells it covers but lost to an overlapping parcel. A cell not listed weighs 1
///   if it is one of the parcel's pixels and 0 otherwise (interior cells are not stored: at a
///   full tile that is 10x less memory). Listing a cell with its true fraction is always allowed,
///   so a list of every touched cell is valid too. [`LabelRaster::full_coverage`] expands it.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelRaster {
    pub grid: Grid,
    pub n_parcels: usize,
    pub labels: Vec<u32>,
    pub offsets: Vec<u64>,
    pub pixels: Vec<u32>,
    /// Built with coverage fractions (the lists below may be empty even so: parcels that follow
    /// pixel edges have no partial cell).
    pub coverage: bool,
    pub cov_offsets: Vec<u64>,
    pub cov_pixels: Vec<u32>,
    pub cov_fraction: Vec<f64>,
}

impl LabelRaster {
    /// Builds the per-parcel index (CSR) from a label array, without coverage fractions.
    ///
    /// Panics if `labels.len() != grid.len()`; labels above `n_parcels` are ignored.
    pub fn from_labels(grid: Grid, n_parcels: usize, labels: Vec<u32>) -> Self {
        assert_eq!(
            labels.len(),
            grid.len(),
            "label array does not match the grid"
        );
        let mut counts = vec![0u64; n_parcels + 1];
        for &l in &labels {
            if l != NO_PARCEL && (l as usize) <= n_parcels {
                counts[l as usize] += 1;
            }
        }
        // counts[k] holds parcel k-1's count; turn into offsets by exclusive prefix sum.
        let mut offsets = vec![0u64; n_parcels + 1];
        for p in 0..n_parcels {
            offsets[p + 1] = offsets[p] + counts[p + 1];
        }
        let mut cursor = offsets.clone();
        let mut pixels = vec![0u32; offsets[n_parcels] as usize];
        for (i, &l) in labels.iter().enumerate() {
            if l != NO_PARCEL && (l as usize) <= n_parcels {
                let p = (l - 1) as usize;
                pixels[cursor[p] as usize] = i as u32;
                cursor[p] += 1;
            }
        }
        Self {
            grid,
            n_parcels,
            labels,
            offsets,
            pixels,
            coverage: false,
            cov_offsets: vec![0; n_parcels + 1],
            cov_pixels: Vec::new(),
            cov_fraction: Vec::new(),
        }
    }

    /// Pixel-centre member pixels of parcel `p` (row-major indices, ascending).
    pub fn parcel_pixels(&self, p: usize) -> &[u32] {
        &self.pixels[self.offsets[p] as usize..self.offsets[p + 1] as usize]
    }

    /// Listed coverage cells of parcel `p` (its boundary, see the type's documentation) with
    /// their covered fractions (empty without coverage).
    pub fn parcel_coverage(&self, p: usize) -> (&[u32], &[f64]) {
        let range = self.cov_offsets[p] as usize..self.cov_offsets[p + 1] as usize;
        (&self.cov_pixels[range.clone()], &self.cov_fraction[range])
    }

    /// Every cell parcel `p` covers with its fraction, row-major: the listed cells merged with
    /// the parcel's unlisted pixels (fraction 1). Empty without coverage.
    pub fn full_coverage(&self, p: usize) -> (Vec<u32>, Vec<f64>) {
        if !self.coverage {
            return (Vec::new(), Vec::new());
        }
        let (cells, fractions) = self.parcel_coverage(p);
        let members = self.parcel_pixels(p);
        let mut out_cells = Vec::with_capacity(cells.len() + members.len());
        let mut out_fractions = Vec::with_capacity(cells.len() + members.len());
        let mut m = 0;
        for (&c, &f) in cells.iter().zip(fractions) {
            while m < members.len() && members[m] <= c {
                if members[m] < c {
                    out_cells.push(members[m]);
                    out_fractions.push(1.0);
                }
                m += 1;
            }
            out_cells.push(c);
            out_fractions.push(f);
        }
        out_cells.extend_from_slice(&members[m..]);
        out_fractions.resize(out_cells.len(), 1.0);
        (out_cells, out_fractions)
    }

    pub fn has_coverage(&self) -> bool {
        self.coverage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_lists_each_parcels_pixels_in_order() {
        let grid = Grid::new(2, 3, [1.0, 0.0, 0.0, 0.0, -1.0, 2.0]);
        let lr = LabelRaster::from_labels(grid, 2, vec![1, 0, 2, 2, 1, 0]);
        assert_eq!(lr.parcel_pixels(0), &[0, 4]);
        assert_eq!(lr.parcel_pixels(1), &[2, 3]);
        assert!(!lr.has_coverage());
    }

    #[test]
    fn full_coverage_merges_listed_cells_with_interior_pixels() {
        let grid = Grid::new(2, 3, [1.0, 0.0, 0.0, 0.0, -1.0, 2.0]);
        let mut lr = LabelRaster::from_labels(grid, 1, vec![1, 1, 0, 1, 1, 0]);
        lr.coverage = true;
        lr.cov_offsets = vec![0, 3];
        lr.cov_pixels = vec![1, 2, 3];
        lr.cov_fraction = vec![0.75, 0.25, 0.5];
        let (cells, fractions) = lr.full_coverage(0);
        assert_eq!(cells, [0, 1, 2, 3, 4]);
        assert_eq!(fractions, [1.0, 0.75, 0.25, 0.5, 1.0]);
    }
}
