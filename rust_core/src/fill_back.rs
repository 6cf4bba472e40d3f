//! Reconstructed pixels written back into an acquisition's bands, with per-label sums of what
//! was reconstructed (the cloud-removal stage's bookkeeping, one pass per block).
//!
//! A pixel of the block is filled when it is a target and its reflectance and uncertainty are
//! finite in every band; then its bands and `done` flag are set, and its label's `count`,
//! `sigma_sum[c]` and `confidence` (`exp(-mean sigma / sigma_ref)`, the mean over the bands)
//! grow.

use crate::kernel_error::{input_error, KernelError};

/// The whole acquisition: bands `[C, H, W]` and `done [H, W]` (written), and the per-label
/// sums (`count [n]`, `sigma_sum [C, n]`, `confidence [n]`, added to).
pub struct Filled<'a> {
    pub bands: &'a mut [f32],
    pub done: &'a mut [bool],
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub count: &'a mut [f64],
    pub sigma_sum: &'a mut [f64],
    pub confidence: &'a mut [f64],
}

/// One block's output, `[C, h, w]` planes and `[h, w]` masks, placed at `(row, col)`.
pub struct Block<'a> {
    pub reflectance: &'a [f32],
    pub sigma: &'a [f32],
    pub target: &'a [bool],
    pub labels: &'a [u32],
    pub row: usize,
    pub col: usize,
    pub height: usize,
    pub width: usize,
}

/// Fills `block`'s target pixels into `filled` (see the module doc).
pub fn fill_block(
    filled: Filled<'_>,
    block: &Block<'_>,
    sigma_ref: f64,
) -> Result<(), KernelError> {
    let Filled {
        bands,
        done,
        channels,
        height,
        width,
        count,
        sigma_sum,
        confidence,
    } = filled;
    let (h, w) = (block.height, block.width);
    let n = count.len();
    if bands.len() != channels * height * width || done.len() != height * width {
        return Err(input_error(format!(
            "bands and done must be [{channels}, {height}, {width}] and [{height}, {width}]"
        )));
    }
    if block.row + h > height || block.col + w > width {
        return Err(input_error(format!(
            "block {h}x{w} at ({}, {}) does not fit in {height}x{width}",
            block.row, block.col
        )));
    }
    if block.reflectance.len() != channels * h * w
        || block.sigma.len() != channels * h * w
        || block.target.len() != h * w
        || block.labels.len() != h * w
    {
        return Err(input_error(format!(
            "block reflectance and sigma must be [{channels}, {h}, {w}], target and labels [{h}, {w}]"
        )));
    }
    if sigma_sum.len() != channels * n || confidence.len() != n {
        return Err(input_error(format!(
            "sigma_sum must be [{channels}, {n}] and confidence [{n}] like count"
        )));
    }
    if let Some(&label) = block.labels.iter().find(|&&l| l as usize >= n) {
        return Err(input_error(format!(
            "label {label} out of range for {n} per-label sums"
        )));
    }
    let plane = h * w;
    for r in 0..h {
        for c in 0..w {
            let p = r * w + c;
            if !block.target[p] {
                continue;
            }
            let finite = (0..channels).all(|k| {
                block.reflectance[k * plane + p].is_finite()
                    && block.sigma[k * plane + p].is_finite()
            });
            if !finite {
                continue;
            }
            let at = (block.row + r) * width + block.col + c;
            let label = block.labels[p] as usize;
            let mut total = 0f64;
            for k in 0..channels {
                bands[k * height * width + at] = block.reflectance[k * plane + p];
                let s = f64::from(block.sigma[k * plane + p]);
                sigma_sum[k * n + label] += s;
                total += s;
            }
            done[at] = true;
            count[label] += 1.0;
            confidence[label] += (-(total / channels as f64) / sigma_ref).exp();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_finite_targets_and_sums_them_by_label() {
        // Grid 2x3, one band; block 2x2 at column 1.
        let mut bands = [0f32; 6];
        let mut done = [false; 6];
        let (mut count, mut sigma_sum, mut confidence) = ([0f64; 3], [0f64; 3], [0f64; 3]);
        let block = Block {
            reflectance: &[0.5, 0.6, f32::NAN, 0.8],
            sigma: &[0.02, 0.04, 0.02, 0.0],
            target: &[true, true, true, false],
            labels: &[1, 2, 2, 2],
            row: 0,
            col: 1,
            height: 2,
            width: 2,
        };
        let filled = Filled {
            bands: &mut bands,
            done: &mut done,
            channels: 1,
            height: 2,
            width: 3,
            count: &mut count,
            sigma_sum: &mut sigma_sum,
            confidence: &mut confidence,
        };
        fill_block(filled, &block, 0.02).unwrap();
        assert_eq!(bands, [0.0, 0.5, 0.6, 0.0, 0.0, 0.0]);
        assert_eq!(done, [false, true, true, false, false, false]);
        assert_eq!(count, [0.0, 1.0, 1.0]);
        assert!((sigma_sum[2] - 0.04).abs() < 1e-9);
        assert!((confidence[1] - (-1f64).exp()).abs() < 1e-6);
    }

    #[test]
    fn labels_out_of_range_are_refused() {
        let (mut bands, mut done) = ([0f32; 1], [false; 1]);
        let (mut count, mut sigma_sum, mut confidence) = ([0f64; 1], [0f64; 1], [0f64; 1]);
        let filled = Filled {
            bands: &mut bands,
            done: &mut done,
            channels: 1,
            height: 1,
            width: 1,
            count: &mut count,
            sigma_sum: &mut sigma_sum,
            confidence: &mut confidence,
        };
        let block = Block {
            reflectance: &[0.1],
            sigma: &[0.1],
            target: &[true],
            labels: &[3],
            row: 0,
            col: 0,
            height: 1,
            width: 1,
        };
        assert!(fill_block(filled, &block, 0.02).is_err());
    }
}
