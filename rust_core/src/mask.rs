//! Validity masks: which pixels of an acquisition can be used, from the Sentinel-2 scene
//! classification (SCL) or from a cloud-probability raster, optionally grown around the
//! invalid area so that cloud edges and shadows' fringes are dropped too.
//!
//! Masks are row-major `bool`, `true` = valid. The SCL is delivered at 20 m; callers resample it
//! to the 10 m band grid with nearest neighbour first (`upsample_nearest` does the exact 2x case).

use rayon::prelude::*;

use crate::kernel_error::{input_error, KernelError};
use crate::raster_value::RasterValue;

/// SCL classes that are invalid by default: 0 no data, 1 saturated or defective, 3 cloud shadow,
/// 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus, 11 snow or ice.
pub const DEFAULT_INVALID_SCL: [u16; 7] = [0, 1, 3, 8, 9, 10, 11];

/// An integer class raster value (SCL is `u8` in most products, `u16` in some).
pub trait ClassValue: Copy + Send + Sync {
    fn class(self) -> usize;
}

impl ClassValue for u8 {
    #[inline(always)]
    fn class(self) -> usize {
        self as usize
    }
}

impl ClassValue for u16 {
    #[inline(always)]
    fn class(self) -> usize {
        self as usize
    }
}

/// Valid mask from a class raster: a pixel is valid unless its class is in `invalid_classes`
/// (classes not listed, including unknown ones, are valid), then the invalid area is dilated
/// by `dilation` pixels (see [`dilate_invalid`]).
pub fn mask_from_scl<T: ClassValue>(
    scl: &[T],
    height: usize,
    width: usize,
    invalid_classes: &[u16],
    dilation: usize,
) -> Result<Vec<bool>, KernelError> {
    check_shape("SCL raster", scl.len(), height, width)?;
    let max_class = invalid_classes.iter().copied().max().unwrap_or(0) as usize;
    let mut is_invalid_class = vec![false; max_class + 1];
    for &c in invalid_classes {
        is_invalid_class[c as usize] = true;
    }
    let invalid: Vec<bool> = scl
        .par_iter()
        .map(|&v| is_invalid_class.get(v.class()).copied().unwrap_or(false))
        .collect();
    Ok(valid_from_invalid(invalid, height, width, dilation))
}

/// Valid mask from a cloud-probability raster: invalid where `prob > threshold`, where the value
/// is NaN or equals `nodata`; then the invalid area is dilated by `dilation` pixels.
pub fn mask_from_probability<T: RasterValue>(
    prob: &[T],
    height: usize,
    width: usize,
    threshold: f64,
    nodata: Option<f64>,
    dilation: usize,
) -> Result<Vec<bool>, KernelError> {
    check_shape("probability raster", prob.len(), height, width)?;
    if threshold.is_nan() {
        return Err(input_error("probability threshold is NaN"));
    }
    let invalid: Vec<bool> = prob
        .par_iter()
        .map(|&v| {
            let v = v.to_f64();
            v.is_nan() || nodata == Some(v) || v > threshold
        })
        .collect();
    Ok(valid_from_invalid(invalid, height, width, dilation))
}

fn valid_from_invalid(
    invalid: Vec<bool>,
    height: usize,
    width: usize,
    dilation: usize,
) -> Vec<bool> {
    let mut invalid = dilate_invalid(invalid, height, width, dilation);
    invalid.par_iter_mut().for_each(|v| *v = !*v);
    invalid
}

fn check_shape(what: &str, len: usize, height: usize, width: usize) -> Result<(), KernelError> {
    if len != height * width {
        return Err(input_error(format!(
            "{what} has {len} pixels, expected {height}x{width}"
        )));
    }
    Ok(())
}

/// Grows the `true` area of a row-major mask by `n` pixels with a square structuring element of
/// side `2n + 1` (Chebyshev distance <= n): a pixel becomes `true` when any pixel within `n` rows
/// and `n` columns of it is. Separable: a horizontal then a vertical pass, each O(H*W) whatever n.
pub fn dilate_invalid(mask: Vec<bool>, height: usize, width: usize, n: usize) -> Vec<bool> {
    if n == 0 || mask.is_empty() {
        return mask;
    }
    let mut horizontal = mask;
    horizontal
        .par_chunks_mut(width)
        .for_each_init(|| vec![false; width], |tmp, row| dilate_row(row, tmp, n));

    // Vertical pass over blocks of rows; each block keeps per-column counts of `true` pixels in
    // the sliding window [r - n, r + n].
    const ROWS_PER_BLOCK: usize = 64;
    let mut out = vec![false; height * width];
    out.par_chunks_mut(width * ROWS_PER_BLOCK)
        .enumerate()
        .for_each(|(block, out_rows)| {
            let r0 = block * ROWS_PER_BLOCK;
            let r1 = r0 + out_rows.len() / width;
            let mut counts = vec![0u32; width];
            let add = |counts: &mut [u32], r: usize, delta: i32| {
                let row = &horizontal[r * width..(r + 1) * width];
                for (c, &v) in counts.iter_mut().zip(row) {
                    if v {
                        *c = c.wrapping_add_signed(delta);
                    }
                }
            };
            for r in r0.saturating_sub(n)..(r0 + n + 1).min(height) {
                add(&mut counts, r, 1);
            }
            for r in r0..r1 {
                let dst = &mut out_rows[(r - r0) * width..(r - r0 + 1) * width];
                for (o, &c) in dst.iter_mut().zip(&counts) {
                    *o = c > 0;
                }
                if r >= n {
                    add(&mut counts, r - n, -1);
                }
                if r + n + 1 < height {
                    add(&mut counts, r + n + 1, 1);
                }
            }
        });
    out
}

/// 1-D dilation of one row in place: distance to the nearest `true` on each side.
fn dilate_row(row: &mut [bool], tmp: &mut [bool], n: usize) {
    let mut last: Option<usize> = None;
    for (c, t) in tmp.iter_mut().enumerate() {
        if row[c] {
            last = Some(c);
        }
        *t = last.is_some_and(|l| c - l <= n);
    }
    let mut next: Option<usize> = None;
    for c in (0..row.len()).rev() {
        if row[c] {
            next = Some(c);
        }
        tmp[c] |= next.is_some_and(|x| x - c <= n);
    }
    row.copy_from_slice(tmp);
}

/// Nearest-neighbour upsampling by an integer factor: `[H, W]` to `[H * f, W * f]`, each source
/// pixel repeated in an `f x f` block (S2 SCL 20 m to the 10 m grid is `f = 2`).
pub fn upsample_nearest<T: Copy + Send + Sync>(
    src: &[T],
    height: usize,
    width: usize,
    factor: usize,
) -> Result<Vec<T>, KernelError> {
    check_shape("class raster", src.len(), height, width)?;
    if factor == 0 {
        return Err(input_error("upsampling factor must be >= 1"));
    }
    let Some(&first) = src.first() else {
        return Ok(Vec::new());
    };
    let out_width = width * factor;
    let mut out = vec![first; src.len() * factor * factor];
    out.par_chunks_mut(out_width)
        .enumerate()
        .for_each(|(r, row)| {
            let src_row = &src[(r / factor) * width..(r / factor + 1) * width];
            for (c, o) in row.iter_mut().enumerate() {
                *o = src_row[c / factor];
            }
        });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force Chebyshev dilation.
    fn dilate_reference(mask: &[bool], h: usize, w: usize, n: usize) -> Vec<bool> {
        let mut out = vec![false; h * w];
        for r in 0..h {
            for c in 0..w {
                let (r0, r1) = (r.saturating_sub(n), (r + n).min(h - 1));
                let (c0, c1) = (c.saturating_sub(n), (c + n).min(w - 1));
                out[r * w + c] = (r0..=r1).any(|rr| (c0..=c1).any(|cc| mask[rr * w + cc]));
            }
        }
        out
    }

    #[test]
    fn dilation_matches_brute_force() {
        let (h, w) = (150, 37);
        // Deterministic sparse pattern, a few blocks of rows to cross block boundaries.
        let mask: Vec<bool> = (0..h * w).map(|i| (i * 7919) % 211 == 0).collect();
        for n in [0, 1, 2, 5] {
            assert_eq!(
                dilate_invalid(mask.clone(), h, w, n),
                dilate_reference(&mask, h, w, n),
                "n={n}"
            );
        }
    }

    #[test]
    fn scl_classes_and_dilation() {
        // 3x4, one cloud (9) in the middle of the first row.
        let scl: Vec<u8> = vec![4, 9, 4, 4, 4, 4, 4, 5, 4, 4, 4, 12];
        let valid = mask_from_scl(&scl, 3, 4, &DEFAULT_INVALID_SCL, 0).unwrap();
        assert_eq!(valid.iter().filter(|v| !**v).count(), 1);
        assert!(!valid[1] && valid[11], "unknown class 12 is valid");
        let valid = mask_from_scl(&scl, 3, 4, &DEFAULT_INVALID_SCL, 1).unwrap();
        let expected = [
            false, false, false, true, false, false, false, true, true, true, true, true,
        ];
        assert_eq!(valid, expected);
    }

    #[test]
    fn probability_threshold_and_nodata() {
        let prob = [0.1f32, 0.5, 0.51, f32::NAN, 255.0, 0.0];
        let valid = mask_from_probability(&prob, 2, 3, 0.5, Some(255.0), 0).unwrap();
        assert_eq!(valid, [true, true, false, false, false, true]);
    }

    #[test]
    fn wrong_shape_is_an_input_error() {
        let err = mask_from_scl(&[0u8; 5], 2, 3, &DEFAULT_INVALID_SCL, 0).unwrap_err();
        assert!(matches!(err, KernelError::Input(m) if m.contains("SCL")));
    }

    #[test]
    fn upsample_repeats_blocks() {
        let up = upsample_nearest(&[1u8, 2, 3, 4], 2, 2, 2).unwrap();
        assert_eq!(up, [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    }
}
