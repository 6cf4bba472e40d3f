//! Cloud removal on a coarser grid than the rasters': the network's inputs reduced over
//! `f x f` blocks of pixels, and its block predictions brought back to the pixels.
//!
//! * Blocks start at row and column 0; a partial block on the bottom or right edge is
//!   completed by replicating the last row or column (numpy's `edge` padding), so its edge
//!   pixels count more than once.
//! * [`block_mean`]: mean of a block's finite values, NaN when it has none; in `Decibel` mode
//!   the mean is taken in linear power (`10^(x/10)`) and returned in dB, as averaging dB would
//!   bias dark targets. Sums run in f32 in row-major order inside the block, as numpy's
//!   phase-by-phase sum does, so both give the same values.
//! * [`block_any`]: a block is set when any of its pixels is.
//! * [`detail_transfer`]: each selected pixel gets its own value at t0 plus its block's
//!   predicted change (`predicted - block t0`, 0 where that is not finite) and its block's
//!   uncertainty; the other pixels are left as they are.

use rayon::prelude::*;

use crate::kernel_error::{input_error, KernelError};

/// How [`block_mean`] averages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Average {
    /// Plain mean (reflectance).
    Linear,
    /// Mean in linear power of dB values, back to dB (radar backscatter).
    Decibel,
}

/// dB to natural-log units of power: `10^(x/10) = exp(x * ln(10)/10)`.
const DB_TO_LN: f32 = (std::f64::consts::LN_10 / 10.0) as f32;

/// Rows and columns of the block grid over `height x width` pixels.
pub fn coarse_shape(height: usize, width: usize, factor: usize) -> (usize, usize) {
    (height.div_ceil(factor), width.div_ceil(factor))
}

fn check(
    len: usize,
    channels: usize,
    height: usize,
    width: usize,
    what: &str,
) -> Result<(), KernelError> {
    if len != channels * height * width {
        return Err(input_error(format!(
            "{what} has {len} values, expected {channels}x{height}x{width}"
        )));
    }
    Ok(())
}

fn check_factor(factor: usize) -> Result<(), KernelError> {
    if factor == 0 {
        return Err(input_error("block factor must be >= 1"));
    }
    Ok(())
}

/// The `(row, col)` pixel offsets of block `(i, j)`, edge-replicated inside the grid.
fn block_pixels(
    i: usize,
    j: usize,
    factor: usize,
    height: usize,
    width: usize,
) -> impl Iterator<Item = usize> {
    (0..factor).flat_map(move |di| {
        let r = (i * factor + di).min(height - 1);
        (0..factor).map(move |dj| r * width + (j * factor + dj).min(width - 1))
    })
}

/// Mean of the finite values of each `factor x factor` block of `data [C, H, W]`:
/// `[C, ceil(H/f), ceil(W/f)]`, NaN where a block has none (see the module doc).
pub fn block_mean(
    data: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    factor: usize,
    average: Average,
) -> Result<Vec<f32>, KernelError> {
    check(data.len(), channels, height, width, "image")?;
    check_factor(factor)?;
    let (h, w) = coarse_shape(height, width, factor);
    let mut out = vec![0f32; channels * h * w];
    if out.is_empty() {
        return Ok(out);
    }
    out.par_chunks_mut(w).enumerate().for_each(|(k, dst)| {
        let (c, i) = (k / h, k % h);
        let plane = &data[c * height * width..(c + 1) * height * width];
        for (j, value) in dst.iter_mut().enumerate() {
            let (mut total, mut count) = (0f32, 0f32);
            for p in block_pixels(i, j, factor, height, width) {
                let v = match average {
                    Average::Linear => plane[p],
                    Average::Decibel => (plane[p] * DB_TO_LN).exp(),
                };
                if v.is_finite() {
                    total += v;
                    count += 1.0;
                }
            }
            *value = if count == 0.0 {
                f32::NAN
            } else {
                let mean = total / count;
                match average {
                    Average::Linear => mean,
                    Average::Decibel if mean > 0.0 => mean.log10() * 10.0,
                    Average::Decibel => f32::NAN,
                }
            };
        }
    });
    Ok(out)
}

/// `[ceil(H/f), ceil(W/f)]`: true where any pixel of the block of `mask [H, W]` is.
pub fn block_any(
    mask: &[bool],
    height: usize,
    width: usize,
    factor: usize,
) -> Result<Vec<bool>, KernelError> {
    check(mask.len(), 1, height, width, "mask")?;
    check_factor(factor)?;
    let (h, w) = coarse_shape(height, width, factor);
    let mut out = vec![false; h * w];
    if out.is_empty() {
        return Ok(out);
    }
    out.par_chunks_mut(w).enumerate().for_each(|(i, dst)| {
        for (j, value) in dst.iter_mut().enumerate() {
            *value = block_pixels(i, j, factor, height, width).any(|p| mask[p]);
        }
    });
    Ok(out)
}

/// The network's output on the block grid, `[C, h, w]` each, with the block means of t0 it
/// was given.
pub struct BlockPrediction<'a> {
    pub t0: &'a [f32],
    pub predicted: &'a [f32],
    pub sigma: &'a [f32],
    pub height: usize,
    pub width: usize,
    pub factor: usize,
}

/// Pixels `[C, H, W]` written by [`detail_transfer`]: `t0` read, the other two written.
pub struct PixelPlanes<'a> {
    pub t0: &'a [f32],
    pub reflectance: &'a mut [f32],
    pub uncertainty: &'a mut [f32],
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

/// Writes, for each pixel where `pixels [H, W]` is true, `t0 + (block predicted - block t0)`
/// into `reflectance` and the block's sigma into `uncertainty` (see the module doc).
pub fn detail_transfer(
    blocks: &BlockPrediction<'_>,
    planes: PixelPlanes<'_>,
    pixels: &[bool],
) -> Result<(), KernelError> {
    let PixelPlanes {
        t0,
        reflectance,
        uncertainty,
        channels,
        height,
        width,
    } = planes;
    check_factor(blocks.factor)?;
    let (h, w) = (blocks.height, blocks.width);
    if (h, w) != coarse_shape(height, width, blocks.factor) {
        return Err(input_error(format!(
            "blocks are {h}x{w}, expected {:?} for {height}x{width} pixels in blocks of {}",
            coarse_shape(height, width, blocks.factor),
            blocks.factor
        )));
    }
    check(pixels.len(), 1, height, width, "pixels")?;
    for (what, len) in [("t0", t0.len()), ("reflectance", reflectance.len())] {
        check(len, channels, height, width, what)?;
    }
    check(uncertainty.len(), channels, height, width, "uncertainty")?;
    for (what, len) in [
        ("block t0", blocks.t0.len()),
        ("predicted", blocks.predicted.len()),
        ("sigma", blocks.sigma.len()),
    ] {
        check(len, channels, h, w, what)?;
    }
    if reflectance.is_empty() {
        return Ok(());
    }
    let f = blocks.factor;
    reflectance
        .par_chunks_mut(width)
        .zip(uncertainty.par_chunks_mut(width))
        .enumerate()
        .for_each(|(k, (out, sigma_out))| {
            let (c, r) = (k / height, k % height);
            let row = &pixels[r * width..(r + 1) * width];
            let fine = &t0[k * width..(k + 1) * width];
            let b = (c * h + r / f) * w;
            for col in (0..width).filter(|&col| row[col]) {
                let change = blocks.predicted[b + col / f] - blocks.t0[b + col / f];
                let change = if change.is_nan() {
                    0.0
                } else {
                    change.clamp(f32::MIN, f32::MAX)
                };
                out[col] = fine[col] + change;
                sigma_out[col] = blocks.sigma[b + col / f];
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_mean_skips_nan_and_replicates_edges() {
        // 3x3 in blocks of 2: the right column and bottom row are replicated.
        let data = [1.0, 2.0, 3.0, f32::NAN, 5.0, 6.0, 7.0, 8.0, 9.0];
        let out = block_mean(&data, 1, 3, 3, 2, Average::Linear).unwrap();
        assert_eq!(out, [8.0 / 3.0, 4.5, 7.5, 9.0]);
        let none = block_mean(&[f32::NAN; 4], 1, 2, 2, 2, Average::Linear).unwrap();
        assert!(none[0].is_nan());
    }

    #[test]
    fn decibel_mean_is_taken_in_power() {
        let out = block_mean(&[0.0, 10.0, f32::NAN, 10.0], 1, 2, 2, 2, Average::Decibel).unwrap();
        let expected = (7.0f32).log10() * 10.0; // (1 + 10 + 10) / 3 in power
        assert!((out[0] - expected).abs() < 1e-5, "{} vs {expected}", out[0]);
    }

    #[test]
    fn block_any_sets_a_block_for_one_pixel() {
        let mask = [false, false, false, false, false, true];
        assert_eq!(block_any(&mask, 2, 3, 2).unwrap(), [false, true]);
    }

    #[test]
    fn detail_transfer_adds_the_block_change_to_selected_pixels_only() {
        let t0 = [0.1, 0.2, 0.3, 0.4];
        let (mut refl, mut sigma) = ([9.0f32; 4], [0f32; 4]);
        let blocks = BlockPrediction {
            t0: &[0.25],
            predicted: &[0.35],
            sigma: &[0.02],
            height: 1,
            width: 1,
            factor: 2,
        };
        let planes = PixelPlanes {
            t0: &t0,
            reflectance: &mut refl,
            uncertainty: &mut sigma,
            channels: 1,
            height: 2,
            width: 2,
        };
        detail_transfer(&blocks, planes, &[true, false, true, true]).unwrap();
        let expected = [0.2, 9.0, 0.4, 0.5];
        for (got, want) in refl.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{refl:?}");
        }
        assert_eq!(sigma, [0.02, 0.0, 0.02, 0.02]);
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        assert!(block_mean(&[0.0; 5], 1, 2, 2, 2, Average::Linear).is_err());
        assert!(block_any(&[false; 4], 2, 2, 0).is_err());
    }
}
