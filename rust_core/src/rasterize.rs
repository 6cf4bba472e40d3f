//! Pixel-centre rasterisation of one parcel, the rule of GDAL's
//! `rasterize(..., all_touched=False)`.
//!
//! A pixel belongs to a parcel when its centre lies inside the polygon, even-odd over all rings
//! of all parts (so holes are left out). Ties follow GDAL's scanline: the row `j` is sampled at
//! `y = j + 0.5`; an edge counts when `y0 <= y < y1` (lower end included, upper excluded); a
//! crossing at `x` starts or ends the run at column `floor(x + 0.5)`, so the centres inside are
//! those with `x_left < centre <= x_right` (one exactly on a right crossing is in). A horizontal
//! edge lying exactly on a scanline also burns the centres `x_end < centre <= x_start` when it
//! runs towards -x once its ring is clockwise in world coordinates (GDAL's "bottom" horizontal
//! segments; rasterio hands GDAL rings in that orientation whatever the input's).
//! Pixel coordinates are computed as GDAL computes them (`polygons::PixelTransform`), so ties on
//! vertices placed exactly on pixel centres fall the same way too.

use crate::grid::Grid;
use crate::polygons::Edge;

/// A run of pixels `col_start..col_end` of one row, all inside the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub row: u32,
    pub col_start: u32,
    pub col_end: u32,
}

/// Appends to `spans` the runs of pixels whose centre is inside the polygon made of `edges`,
/// in row-major order, clipped to the grid, each pixel once.
pub fn centre_spans(edges: &[Edge], grid: &Grid, spans: &mut Vec<Span>) {
    let own = spans.len();
    if edges.is_empty() || grid.is_empty() {
        return;
    }
    let (ymin, ymax) = edges
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), e| {
            (lo.min(e.y0), hi.max(e.y1))
        });
    // Rows whose centre y = j + 0.5 lies in [ymin, ymax] (ymax itself for horizontal edges).
    let first = (ymin - 0.5).ceil().max(0.0);
    let end = ((ymax - 0.5).floor() + 1.0).min(grid.height as f64);
    if first >= end {
        return;
    }
    let (first, end) = (first as usize, end as usize);
    let width = grid.width as i64;
    let mut push = |row: usize, start: i64, stop: i64| {
        let (start, stop) = (start.clamp(0, width), stop.clamp(0, width));
        if start < stop {
            spans.push(Span {
                row: row as u32,
                col_start: start as u32,
                col_end: stop as u32,
            });
        }
    };

    let (flat, mut by_start): (Vec<&Edge>, Vec<&Edge>) = edges.iter().partition(|e| e.y0 == e.y1);
    by_start.sort_unstable_by(|a, b| a.y0.total_cmp(&b.y0));
    let mut next = 0;
    let mut active: Vec<&Edge> = Vec::new();
    let mut crossings: Vec<i64> = Vec::new();
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
            crossings.push(round_half_up(x));
        }
        crossings.sort_unstable();
        for pair in crossings.chunks_exact(2) {
            push(row, pair[0], pair[1]);
        }
    }
    for e in flat {
        let row = e.y0 - 0.5;
        if e.x0 > e.x1 && row.fract() == 0.0 && row >= first as f64 && row < end as f64 {
            push(row as usize, round_half_up(e.x1), round_half_up(e.x0));
        }
    }
    if spans.len() > own + 1 {
        merge_spans(spans, own);
    }
}

fn round_half_up(x: f64) -> i64 {
    (x + 0.5).floor() as i64
}

/// Sorts `spans[own..]` row-major and merges those that overlap or touch, so each pixel
/// appears once and pixels come out in ascending order.
fn merge_spans(spans: &mut Vec<Span>, own: usize) {
    spans[own..].sort_unstable_by_key(|s| (s.row, s.col_start));
    let mut merged = own;
    for i in own + 1..spans.len() {
        let s = spans[i];
        let last = &mut spans[merged];
        if s.row == last.row && s.col_start <= last.col_end {
            last.col_end = last.col_end.max(s.col_end);
        } else {
            merged += 1;
            spans[merged] = s;
        }
    }
    spans.truncate(merged + 1);
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

    fn spans_of(edges: &[Edge], grid: &Grid) -> Vec<Span> {
        // Something already in the buffer must stay untouched.
        let sentinel = Span {
            row: 99,
            col_start: 0,
            col_end: 1,
        };
        let mut spans = vec![sentinel];
        centre_spans(edges, grid, &mut spans);
        assert_eq!(spans[0], sentinel);
        spans.split_off(1)
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
        let spans = spans_of(&edges_of(&coords, &[0, 5, 10], &grid), &grid);
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
        let spans = spans_of(&edges_of(&coords, &[0, 5], &grid), &grid);
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
    fn horizontal_edges_on_centre_rows_burn_like_gdal_in_either_orientation() {
        // North-up: pixel row = 3 - y. The box spans pixel rows 0.5..1.5: row 0 by the usual
        // crossings, row 1 because its world-bottom edge lies on the row's centre line.
        let grid = Grid::new(3, 3, [1.0, 0.0, 0.0, 0.0, -1.0, 3.0]);
        let ccw = [0.0, 1.5, 3.0, 1.5, 3.0, 2.5, 0.0, 2.5, 0.0, 1.5];
        let cw = [0.0, 1.5, 0.0, 2.5, 3.0, 2.5, 3.0, 1.5, 0.0, 1.5];
        for coords in [ccw, cw] {
            let spans = spans_of(&edges_of(&coords, &[0, 5], &grid), &grid);
            assert_eq!(mask(&spans, &grid), vec![1, 1, 1, 1, 1, 1, 0, 0, 0]);
        }
    }

    #[test]
    fn parts_outside_the_grid_are_clipped() {
        let grid = identity_grid(3, 3);
        let coords = [-5.0, -5.0, 1.9, -5.0, 1.9, 1.9, -5.0, 1.9, -5.0, -5.0];
        let spans = spans_of(&edges_of(&coords, &[0, 5], &grid), &grid);
        assert_eq!(mask(&spans, &grid), vec![1, 1, 0, 1, 1, 0, 0, 0, 0]);
        let outside = [10.0, 10.0, 12.0, 10.0, 12.0, 12.0, 10.0, 10.0];
        assert!(spans_of(&edges_of(&outside, &[0, 4], &grid), &grid).is_empty());
    }
}
