//! Pixel-centre rasterisation of one parcel, the rule of GDAL's
//! `rasterize(..., all_touched=False)`.
//!
//! A pixel belongs to a parcel when its centre lies inside the polygon, even-odd over all rings
//! of all parts (so holes are left out). Ties follow GDAL's scanline: the row `j` is sampled at
//! `y = j + 0.5`; an edge counts when `y0 <= y < y1` (lower end included, upper excluded); a
//! crossing at `x` starts or ends the run at column `floor(x + 0.5)`, so the centres inside are
//! those with `x_left < centre <= x_right` (one exactly on a right crossing is in). Horizontal edges lying on a
//! scanline are skipped, where GDAL burns some of them: the only known difference, and it needs
//! a vertex exactly on a pixel-centre row.

use crate::grid::Grid;
use crate::polygons::Edge;

/// A run of pixels `col_start..col_end` of one row, all inside the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub row: u32,
    pub col_start: u32,
    pub col_end: u32,
}

/// Runs of pixels whose centre is inside the polygon made of `edges`, in row-major order,
/// clipped to the grid.
pub fn centre_spans(edges: &[Edge], grid: &Grid) -> Vec<Span> {
    let mut spans = Vec::new();
    if edges.is_empty() || grid.is_empty() {
        return spans;
    }
    let (ymin, ymax) = edges
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), e| {
            (lo.min(e.y0), hi.max(e.y1))
        });
    // Rows whose centre y = j + 0.5 lies in [ymin, ymax).
    let first = (ymin - 0.5).ceil().max(0.0);
    let end = (ymax - 0.5).ceil().min(grid.height as f64);
    if first >= end {
        return spans;
    }
    let (first, end) = (first as usize, end as usize);

    let mut by_start: Vec<&Edge> = edges.iter().collect();
    by_start.sort_unstable_by(|a, b| a.y0.total_cmp(&b.y0));
    let mut next = 0;
    let mut active: Vec<&Edge> = Vec::new();
    let mut crossings: Vec<i64> = Vec::new();
    let width = grid.width as i64;
    for row in first..end {
        let y = row as f64 + 0.5;
        while next < by_start.len() && by_start[next].y0 <= y {
            active.push(by_start[next]);
            next += 1;
        }
        active.retain(|e| e.y1 > y);
        crossings.clear();
        for e in &active {
            // Same expression as GDAL, so ties round the same way.
            let x = (y - e.y0) * (e.x1 - e.x0) / (e.y1 - e.y0) + e.x0;
            crossings.push((x + 0.5).floor() as i64);
        }
        crossings.sort_unstable();
        for pair in crossings.chunks_exact(2) {
            let start = pair[0].clamp(0, width);
            let stop = pair[1].clamp(0, width);
            if start < stop {
                spans.push(Span {
                    row: row as u32,
                    col_start: start as u32,
                    col_end: stop as u32,
                });
            }
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::polygons::{PixelTransform, RaggedPolygons};

    fn edges_of(coords: &[f64], rings: &[i64], grid: &Grid) -> Vec<Edge> {
        let polys = vec![0, rings.len() as i64 - 1];
        let geoms = vec![0, 1];
        let ragged = RaggedPolygons {
            coords,
            ring_offsets: rings,
            polygon_offsets: &polys,
            geometry_offsets: &geoms,
        };
        ragged.validate().unwrap();
        ragged.parcel_edges(0, &PixelTransform::new(grid).unwrap())
    }

    fn identity_grid(h: usize, w: usize) -> Grid {
        // y grows downwards like rows, so world coordinates are pixel coordinates.
        Grid::new(h, w, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    }

    fn mask(spans: &[Span], grid: &Grid) -> Vec<u8> {
        let mut m = vec![0u8; grid.len()];
        for s in spans {
            for c in s.col_start..s.col_end {
                m[s.row as usize * grid.width + c as usize] = 1;
            }
        }
        m
    }

    #[test]
    fn square_with_hole_leaves_the_hole_out() {
        let grid = identity_grid(6, 6);
        #[rustfmt::skip]
        let coords = [
            0.2, 0.2, 5.8, 0.2, 5.8, 5.8, 0.2, 5.8, 0.2, 0.2,
            2.2, 2.2, 2.2, 3.8, 3.8, 3.8, 3.8, 2.2, 2.2, 2.2,
        ];
        let spans = centre_spans(&edges_of(&coords, &[0, 5, 10], &grid), &grid);
        let m = mask(&spans, &grid);
        assert_eq!(m.iter().map(|&v| v as usize).sum::<usize>(), 32);
        assert_eq!(m[2 * 6 + 2], 0);
        assert_eq!(m[3 * 6 + 3], 0);
        assert_eq!(m[0], 1);
    }

    #[test]
    fn centre_on_left_edge_is_out_and_on_right_edge_is_in() {
        let grid = identity_grid(1, 4);
        // x from 0.5 (centre of col 0) to 2.5 (centre of col 2), covering row 0 fully.
        let coords = [0.5, 0.0, 2.5, 0.0, 2.5, 1.0, 0.5, 1.0, 0.5, 0.0];
        let spans = centre_spans(&edges_of(&coords, &[0, 5], &grid), &grid);
        assert_eq!(
            spans,
            vec![Span {
                row: 0,
                col_start: 1,
                col_end: 3
            }]
        );
    }

    #[test]
    fn parts_outside_the_grid_are_clipped() {
        let grid = identity_grid(3, 3);
        let coords = [-5.0, -5.0, 1.9, -5.0, 1.9, 1.9, -5.0, 1.9, -5.0, -5.0];
        let spans = centre_spans(&edges_of(&coords, &[0, 5], &grid), &grid);
        assert_eq!(mask(&spans, &grid), vec![1, 1, 0, 1, 1, 0, 0, 0, 0]);
        let outside = [10.0, 10.0, 12.0, 10.0, 12.0, 12.0, 10.0, 10.0];
        assert!(centre_spans(&edges_of(&outside, &[0, 4], &grid), &grid).is_empty());
    }
}
