//! Exact fraction of each grid cell covered by a polygon (what exactextract computes), by
//! signed-area accumulation as in font rasterisers (font-rs).
//!
//! Every edge adds, for each row it crosses, the exact signed trapezoid area between itself and
//! the right edge of the cells it passes through, and the rest of its height to the next cell;
//! a prefix sum along the row then gives, per cell, the integral of the winding number over
//! the cell. Exterior rings wind +1 and holes -1 whatever their input orientation (see
//! `polygons::Edge::winding`), so for a valid polygon that integral is the covered area.
//! Pixel space makes a cell's area 1, so the area is the fraction. Edge parts left of the grid
//! are projected onto its left border (they still cover the cells to their right); parts right
//! of it cover nothing inside the grid and are dropped.

use crate::grid::Grid;
use crate::polygons::Edge;

/// Fractions below this are float noise around zero and are not stored.
pub const MIN_FRACTION: f64 = 1e-12;

/// Appends to `pixels`/`fractions` every cell of `grid` the polygon made of `edges` covers,
/// in row-major order, with its covered fraction in `(0, 1]` (fractions within
/// [`MIN_FRACTION`] of 1 are stored as exactly 1).
pub fn coverage_cells(
    edges: &[Edge],
    grid: &Grid,
    pixels: &mut Vec<u32>,
    fractions: &mut Vec<f64>,
) {
    if edges.is_empty() || grid.is_empty() {
        return;
    }
    let (mut xmin, mut xmax) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut ymin, mut ymax) = (f64::INFINITY, f64::NEG_INFINITY);
    for e in edges {
        xmin = xmin.min(e.x0.min(e.x1));
        xmax = xmax.max(e.x0.max(e.x1));
        ymin = ymin.min(e.y0);
        ymax = ymax.max(e.y1);
    }
    let (width, height) = (grid.width as f64, grid.height as f64);
    if xmax <= 0.0 || xmin >= width || ymax <= 0.0 || ymin >= height {
        return;
    }
    let col0 = xmin.floor().max(0.0);
    let ncols = (xmax.ceil().min(width) - col0) as usize;
    let row0 = ymin.floor().max(0.0) as usize;
    let row1 = ymax.ceil().min(height) as usize;
    // The bounding box bounds the output: one allocation per parcel instead of regrowing
    // (capped, as a long diagonal road has a huge box and few cells).
    let bound = (ncols * (row1 - row0)).min(1 << 20);
    pixels.reserve(bound);
    fractions.reserve(bound);

    let mut by_start: Vec<&Edge> = edges.iter().collect();
    by_start.sort_unstable_by(|a, b| a.y0.total_cmp(&b.y0));
    let mut next = 0;
    let mut active: Vec<&Edge> = Vec::new();
    // One slot per column plus one for what flows past the last column.
    let mut acc = vec![0.0f64; ncols + 1];
    for row in row0..row1 {
        let (top, bottom) = (row as f64, row as f64 + 1.0);
        while next < by_start.len() && by_start[next].y0 < bottom {
            active.push(by_start[next]);
            next += 1;
        }
        active.retain(|e| e.y1 > top);
        for e in &active {
            let (ya, yb) = (e.y0.max(top), e.y1.min(bottom));
            if ya < yb {
                let (xa, xb) = (x_at(e, ya) - col0, x_at(e, yb) - col0);
                accumulate(&mut acc, xa, xb, (yb - ya) * e.winding, ncols);
            }
        }
        let base = row * grid.width + col0 as usize;
        let mut covered = 0.0;
        for (k, slot) in acc.iter_mut().take(ncols).enumerate() {
            covered += *slot;
            *slot = 0.0;
            if covered > MIN_FRACTION {
                pixels.push((base + k) as u32);
                fractions.push(if covered > 1.0 - MIN_FRACTION {
                    1.0
                } else {
                    covered
                });
            }
        }
        acc[ncols] = 0.0;
    }
}

/// x of edge `e` at height `y` (`e.y0 <= y <= e.y1`), exact at the end points.
fn x_at(e: &Edge, y: f64) -> f64 {
    if y == e.y0 {
        e.x0
    } else if y == e.y1 {
        e.x1
    } else {
        e.x0 + (y - e.y0) * (e.x1 - e.x0) / (e.y1 - e.y0)
    }
}

/// Adds the area contributions of one edge piece inside one row, from `x = xa` to `x = xb`
/// (column-local coordinates), of signed height `dy`, into `acc` of `ncols + 1` slots.
fn accumulate(acc: &mut [f64], xa: f64, xb: f64, dy: f64, ncols: usize) {
    let right = ncols as f64;
    if xa == xb {
        if xa <= 0.0 {
            acc[0] += dy;
        } else if xa < right {
            add_piece(acc, xa.floor() as usize, xa, dy);
        }
        return;
    }
    let (mut lo, hi) = if xa < xb { (xa, xb) } else { (xb, xa) };
    let dy_per_x = dy / (hi - lo);
    if lo < 0.0 {
        // Left of the grid: covers all of the row's cells to the right.
        let end = hi.min(0.0);
        acc[0] += dy_per_x * (end - lo);
        lo = 0.0;
    }
    let hi = hi.min(right);
    let mut col = lo.floor() as usize;
    while lo < hi {
        let end = hi.min((col + 1) as f64);
        add_piece(acc, col, 0.5 * (lo + end), dy_per_x * (end - lo));
        lo = end;
        col += 1;
    }
}

/// A straight piece inside column `col` with mean x `x_mid` and signed height `dy`: the part
/// of the cell right of it, `dy * (col + 1 - x_mid)`, goes to `col`, the rest to `col + 1`.
fn add_piece(acc: &mut [f64], col: usize, x_mid: f64, dy: f64) {
    let inside = dy * ((col + 1) as f64 - x_mid);
    acc[col] += inside;
    acc[col + 1] += dy - inside;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::polygons::{PixelTransform, RaggedPolygons};

    fn cover(coords: &[f64], rings: &[i64], grid: &Grid) -> Vec<(u32, f64)> {
        let polys = vec![0, rings.len() as i64 - 1];
        let geoms = vec![0, 1];
        let ragged = RaggedPolygons {
            coords,
            ring_offsets: rings,
            polygon_offsets: &polys,
            geometry_offsets: &geoms,
        };
        ragged.validate().unwrap();
        let edges = ragged.parcel_edges(0, &PixelTransform::new(grid).unwrap());
        let (mut p, mut f) = (Vec::new(), Vec::new());
        coverage_cells(&edges, grid, &mut p, &mut f);
        p.into_iter().zip(f).collect()
    }

    fn north_up(h: usize, w: usize) -> Grid {
        Grid::new(h, w, [10.0, 0.0, 1000.0, 0.0, -10.0, 2000.0])
    }

    #[test]
    fn half_covered_cells_of_a_triangle() {
        // Triangle over pixel-space (0,0), (2,0), (0,2): the diagonal halves cells 1 and 2.
        let grid = Grid::new(2, 2, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        let cells = cover(&[0.0, 0.0, 2.0, 0.0, 0.0, 2.0, 0.0, 0.0], &[0, 4], &grid);
        assert_eq!(cells.len(), 3);
        assert_eq!(cells[0], (0, 1.0));
        assert!((cells[1].1 - 0.5).abs() < 1e-12 && cells[1].0 == 1);
        assert!((cells[2].1 - 0.5).abs() < 1e-12 && cells[2].0 == 2);
    }

    #[test]
    fn orientation_of_rings_does_not_matter_and_holes_subtract() {
        let grid = north_up(4, 4);
        // Exterior 1005..1035 x 1965..1995 (pixel 0.5..3.5), hole over pixel 1.5..2.5.
        #[rustfmt::skip]
        let ccw = [
            1005.0, 1965.0, 1035.0, 1965.0, 1035.0, 1995.0, 1005.0, 1995.0, 1005.0, 1965.0,
            1015.0, 1975.0, 1025.0, 1975.0, 1025.0, 1985.0, 1015.0, 1985.0, 1015.0, 1975.0,
        ];
        let mut cw = ccw;
        // Reverse the exterior only: both rings now have the same orientation.
        for i in 0..5 {
            cw[2 * i] = ccw[2 * (4 - i)];
            cw[2 * i + 1] = ccw[2 * (4 - i) + 1];
        }
        for coords in [ccw, cw] {
            let cells = cover(&coords, &[0, 5, 10], &grid);
            let total: f64 = cells.iter().map(|c| c.1).sum();
            assert!((total - 8.0).abs() < 1e-12, "area {total}");
            let centre: f64 = cells
                .iter()
                .filter(|c| [5, 6, 9, 10].contains(&c.0))
                .map(|c| c.1)
                .sum();
            assert!((centre - 3.0).abs() < 1e-12, "centre {centre}");
        }
    }

    #[test]
    fn parts_outside_the_grid_are_clipped_exactly() {
        let grid = north_up(2, 2);
        // Pixel-space box -3.0..0.5 x -1.0..1.25 covers half of cell 0 and a quarter of cell 2.
        let coords = [
            970.0, 2010.0, 1005.0, 2010.0, 1005.0, 1987.5, 970.0, 1987.5, 970.0, 2010.0,
        ];
        let cells = cover(&coords, &[0, 5], &grid);
        assert_eq!(cells.len(), 2);
        assert_eq!(cells[0].0, 0);
        assert!((cells[0].1 - 0.5).abs() < 1e-12);
        assert_eq!(cells[1].0, 2);
        assert!((cells[1].1 - 0.125).abs() < 1e-12);
        // Entirely right of the grid: nothing.
        let right = [
            1030.0, 2000.0, 1040.0, 2000.0, 1040.0, 1990.0, 1030.0, 2000.0,
        ];
        assert!(cover(&right, &[0, 4], &grid).is_empty());
    }

    #[test]
    fn long_diagonal_sums_to_the_exact_area() {
        let grid = north_up(50, 50);
        // A thin sliver crossing many cells; area by the shoelace formula.
        let pts = [
            (1001.3, 1999.1),
            (1497.7, 1502.2),
            (1490.1, 1500.9),
            (1001.3, 1999.1),
        ];
        let coords: Vec<f64> = pts.iter().flat_map(|&(x, y)| [x, y]).collect();
        let cells = cover(&coords, &[0, 4], &grid);
        let twice: f64 = pts
            .windows(2)
            .map(|w| w[0].0 * w[1].1 - w[1].0 * w[0].1)
            .sum();
        let expected = twice.abs() / 2.0 / 100.0;
        let total: f64 = cells.iter().map(|c| c.1).sum();
        assert!((total - expected).abs() < 1e-9, "{total} vs {expected}");
        assert!(cells.iter().all(|c| c.1 > 0.0 && c.1 <= 1.0));
    }
}
