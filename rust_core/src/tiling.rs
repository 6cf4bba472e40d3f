//! Tiling: square windows of side `T` overlapping by `O` pixels that cover an `H x W` grid, and
//! stitching of per-window model outputs back into one image with a blending weight that hides
//! the seams.
//!
//! * Windows start every `T - O` pixels; the last window of a row or column is shifted inward so
//!   it ends on the grid edge, so every window lies fully inside the grid when `H, W >= T`.
//! * Small grids (`H < T` or `W < T`): one window along that axis, starting at 0 and clipped to
//!   the grid; its tile is padded with zeros at the bottom/right when extracted, and only the
//!   part inside the grid is read back when stitching.
//! * Windows are listed row-major: all windows of the first window row, then the next.
//! * Blending: weight `w(i) = min(1, (i + 0.5) / O, (T - i - 0.5) / O)` along each axis (a linear
//!   ramp over the overlap, flat in the middle, never 0), `w_row * w_col` per pixel; the output
//!   is `sum(w * v) / sum(w)` accumulated in f64, so identical tiles stitch back to the exact
//!   input.

use rayon::prelude::*;

use crate::kernel_error::{input_error, KernelError};

/// One window; `height`/`width` are the part inside the grid (`T` unless the grid is smaller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub row: usize,
    pub col: usize,
    pub height: usize,
    pub width: usize,
}

/// Window start offsets along one axis of length `len`.
pub fn window_starts(len: usize, tile: usize, overlap: usize) -> Result<Vec<usize>, KernelError> {
    if tile == 0 {
        return Err(input_error("tile size must be >= 1"));
    }
    if overlap >= tile {
        return Err(input_error(format!(
            "overlap {overlap} must be smaller than the tile size {tile}"
        )));
    }
    if len <= tile {
        return Ok(vec![0]);
    }
    let mut starts = Vec::new();
    let mut start = 0;
    while start + tile < len {
        starts.push(start);
        start += tile - overlap;
    }
    starts.push(len - tile);
    Ok(starts)
}

/// Windows covering an `height x width` grid, row-major.
pub fn tile_windows(
    height: usize,
    width: usize,
    tile: usize,
    overlap: usize,
) -> Result<Vec<Window>, KernelError> {
    if height == 0 || width == 0 {
        return Err(input_error(format!(
            "cannot tile an empty {height}x{width} grid"
        )));
    }
    let rows = window_starts(height, tile, overlap)?;
    let cols = window_starts(width, tile, overlap)?;
    Ok(rows
        .iter()
        .flat_map(|&row| {
            cols.iter().map(move |&col| Window {
                row,
                col,
                height: tile.min(height),
                width: tile.min(width),
            })
        })
        .collect())
}

/// Cuts a `[C, H, W]` image into tiles `[n, C, T, T]` along [`tile_windows`] (zero padded on
/// small grids).
pub fn extract_tiles(
    image: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    tile: usize,
    overlap: usize,
) -> Result<Vec<f32>, KernelError> {
    if image.len() != channels * height * width {
        return Err(input_error(format!(
            "image has {} values, expected {channels}x{height}x{width}",
            image.len()
        )));
    }
    let windows = tile_windows(height, width, tile, overlap)?;
    let mut tiles = vec![0f32; windows.len() * channels * tile * tile];
    // One chunk per tile row: (window, channel, row inside the tile).
    tiles.par_chunks_mut(tile).enumerate().for_each(|(k, dst)| {
        let (w, rest) = (k / (channels * tile), k % (channels * tile));
        let (c, i) = (rest / tile, rest % tile);
        let win = windows[w];
        if i < win.height {
            let src = (c * height + win.row + i) * width + win.col;
            dst[..win.width].copy_from_slice(&image[src..src + win.width]);
        }
    });
    Ok(tiles)
}

/// Blending weight of position `i` in a window of side `tile` with `overlap`.
fn ramp(i: usize, tile: usize, overlap: usize) -> f64 {
    if overlap == 0 {
        return 1.0;
    }
    let o = overlap as f64;
    let up = (i as f64 + 0.5) / o;
    let down = (tile as f64 - i as f64 - 0.5) / o;
    up.min(down).min(1.0)
}

/// Blends tiles `[n, C, T, T]` (in [`tile_windows`] order) into an image `[C, H, W]`.
pub fn stitch(
    tiles: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    tile: usize,
    overlap: usize,
) -> Result<Vec<f32>, KernelError> {
    let rows = window_starts(height, tile, overlap)?;
    let cols = window_starts(width, tile, overlap)?;
    let n = rows.len() * cols.len();
    if tiles.len() != n * channels * tile * tile {
        return Err(input_error(format!(
            "got {} tile values, expected {n} windows x {channels} channels x {tile}x{tile} for a {height}x{width} grid",
            tiles.len()
        )));
    }
    let weights: Vec<f64> = (0..tile).map(|i| ramp(i, tile, overlap)).collect();
    let tile_width = tile.min(width);
    let mut out = vec![0f32; channels * height * width];
    out.par_chunks_mut(width).enumerate().for_each_init(
        || (vec![0f64; width], vec![0f64; width]),
        |(acc, norm), (k, dst)| {
            let (c, r) = (k / height, k % height);
            acc.fill(0.0);
            norm.fill(0.0);
            for (wr, &row0) in rows.iter().enumerate() {
                if r < row0 || r >= row0 + tile {
                    continue;
                }
                let i = r - row0;
                for (wc, &col0) in cols.iter().enumerate() {
                    let t = wr * cols.len() + wc;
                    let src = ((t * channels + c) * tile + i) * tile;
                    let values = &tiles[src..src + tile_width];
                    for (j, &v) in values.iter().enumerate() {
                        let w = weights[i] * weights[j];
                        acc[col0 + j] += w * f64::from(v);
                        norm[col0 + j] += w;
                    }
                }
            }
            for ((d, &a), &s) in dst.iter_mut().zip(acc.iter()).zip(norm.iter()) {
                *d = (a / s) as f32;
            }
        },
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_cover_the_axis_with_full_windows() {
        assert_eq!(window_starts(10, 4, 1).unwrap(), [0, 3, 6]);
        assert_eq!(window_starts(11, 4, 1).unwrap(), [0, 3, 6, 7]);
        assert_eq!(window_starts(4, 4, 2).unwrap(), [0]);
        assert_eq!(window_starts(3, 4, 2).unwrap(), [0]);
        assert!(window_starts(10, 4, 4).is_err());
    }

    #[test]
    fn extract_then_stitch_is_the_identity() {
        for (h, w, t, o) in [(13, 17, 5, 2), (4, 9, 6, 1), (8, 8, 8, 0), (20, 7, 4, 3)] {
            let c = 2;
            let image: Vec<f32> = (0..c * h * w).map(|i| (i as f32 * 0.37).sin()).collect();
            let tiles = extract_tiles(&image, c, h, w, t, o).unwrap();
            assert_eq!(
                stitch(&tiles, c, h, w, t, o).unwrap(),
                image,
                "{h}x{w} T={t} O={o}"
            );
        }
    }

    #[test]
    fn blending_is_continuous_across_a_seam() {
        // Two windows along x holding 0 and 1: the stitched rows ramp from 0 to 1 across the
        // overlap (columns 4..8) instead of jumping.
        let (t, o, w) = (8, 4, 12);
        let mut tiles = vec![0f32; 2 * t * t];
        tiles[t * t..].fill(1.0);
        let out = stitch(&tiles, 1, t, w, t, o).unwrap();
        let row = &out[..w];
        assert_eq!(row[..4], [0.0; 4]);
        assert_eq!(row[8..], [1.0; 4]);
        assert!(
            row.windows(2).all(|p| p[1] >= p[0] && p[1] - p[0] <= 0.25),
            "{row:?}"
        );
        assert!(stitch(&tiles[..t * t], 1, t, w, t, o).is_err());
    }
}
