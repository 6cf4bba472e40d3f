//! Pixel sets: per parcel, a fixed number `S` of valid pixels drawn at random, across all
//! bands — the input of the pixel-set encoder of the heterogeneity model (PSE-TAE).
//!
//! * valid pixel: the same rule as the zonal pass (valid in the mask, data in every band).
//! * parcels with more than `S` valid pixels: `S` of them drawn without replacement, listed in
//!   ascending pixel order.
//! * parcels with `S` or fewer: all of them, then zero padding; the mask says which slots hold a
//!   real pixel (`true`) and which are padding (`false`), as in PSE-TAE's own loader.
//! * draws are seeded per parcel from `(seed, parcel index)`: the same seed gives the same sets
//!   whatever the number of threads.

use std::sync::atomic::AtomicBool;

use rayon::prelude::*;

use crate::kernel_error::{check_cancel, input_error, KernelError};
use crate::label::LabelRaster;
use crate::raster_value::Band;
use crate::zonal::{check_inputs, valid_members};

const PARCELS_PER_CHUNK: usize = 512;

/// Pixel sets of every parcel.
#[derive(Clone, Debug, PartialEq)]
pub struct PixelSets {
    /// Row-major `[n_parcels, n_samples, n_bands]`, scaled values (`raw * scale + offset`).
    pub values: Vec<f32>,
    /// Row-major `[n_parcels, n_samples]`, `true` where the slot holds a real pixel.
    pub mask: Vec<bool>,
}

/// Draws `n_samples` valid pixels per parcel (see the module documentation).
pub fn pixel_sets(
    labels: &LabelRaster,
    bands: &[Band<'_>],
    valid: Option<&[bool]>,
    n_samples: usize,
    seed: u64,
    cancel: &AtomicBool,
) -> Result<PixelSets, KernelError> {
    check_inputs(labels, bands, valid)?;
    if n_samples == 0 {
        return Err(input_error("pixel sets need at least 1 sample per parcel"));
    }
    if bands.is_empty() {
        return Err(input_error("pixel sets need at least one band"));
    }
    let (n, s, b) = (labels.n_parcels, n_samples, bands.len());
    let mut values = vec![0f32; n * s * b];
    let mut mask = vec![false; n * s];
    values
        .par_chunks_mut(PARCELS_PER_CHUNK * s * b)
        .zip(mask.par_chunks_mut(PARCELS_PER_CHUNK * s))
        .enumerate()
        .try_for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(keep, members, gathered), (chunk, (vals, slots))| {
                let first = chunk * PARCELS_PER_CHUNK;
                let parcels = vals.chunks_mut(s * b).zip(slots.chunks_mut(s));
                for (i, (vals, slots)) in parcels.enumerate() {
                    check_cancel(cancel)?;
                    let p = first + i;
                    valid_members(labels, p, bands, valid, keep, members);
                    if members.len() > s {
                        sample_without_replacement(members, s, seed, p as u64);
                    }
                    slots[..members.len()].fill(true);
                    for (j, band) in bands.iter().enumerate() {
                        band.gather_scaled(members, gathered);
                        for (k, &v) in gathered.iter().enumerate() {
                            vals[k * b + j] = v as f32;
                        }
                    }
                }
                Ok::<(), KernelError>(())
            },
        )?;
    Ok(PixelSets { values, mask })
}

/// Keeps `s` of `members` chosen uniformly without replacement (partial Fisher-Yates), sorted.
fn sample_without_replacement(members: &mut Vec<u32>, s: usize, seed: u64, parcel: u64) {
    let mut rng = SplitMix64::new(seed ^ parcel.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let n = members.len();
    for i in 0..s {
        let j = i + rng.below((n - i) as u64) as usize;
        members.swap(i, j);
    }
    members.truncate(s);
    members.sort_unstable();
}

/// SplitMix64 (Steele, Lea and Flood 2014): tiny, fast, good enough for sampling, and the
/// same sequence on every platform.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` by multiply-shift (bias below 2^-40 for any raster size).
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;
    use crate::raster_value::BandData;

    #[test]
    fn sets_are_seeded_padded_and_masked() {
        // Parcel 0: 10 pixels, parcel 1: 2 pixels, parcel 2: none.
        let mut labels = vec![1u32; 10];
        labels.extend([2, 2, 0, 0]);
        let lr =
            LabelRaster::from_labels(Grid::new(2, 7, [1.0, 0.0, 0.0, 0.0, -1.0, 0.0]), 3, labels);
        let data: Vec<f32> = (0..14).map(|i| i as f32).collect();
        let bands = [
            Band::raw(BandData::F32(&data)),
            Band {
                scale: 2.0,
                ..Band::raw(BandData::F32(&data))
            },
        ];
        let flag = AtomicBool::new(false);
        let a = pixel_sets(&lr, &bands, None, 4, 7, &flag).unwrap();
        let b = pixel_sets(&lr, &bands, None, 4, 7, &flag).unwrap();
        let c = pixel_sets(&lr, &bands, None, 4, 8, &flag).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.values[..8], c.values[..8]);
        assert_eq!(
            a.mask,
            [true, true, true, true, true, true, false, false, false, false, false, false]
        );
        // Parcel 0's samples are distinct members, band 1 is twice band 0.
        let firsts: Vec<f32> = (0..4).map(|k| a.values[k * 2]).collect();
        assert!(firsts.windows(2).all(|w| w[0] < w[1]) && firsts.iter().all(|&v| v < 10.0));
        assert!((0..4).all(|k| a.values[k * 2 + 1] == 2.0 * a.values[k * 2]));
        // Parcel 1: its two pixels then padding.
        assert_eq!(
            &a.values[8..16],
            &[10.0, 20.0, 11.0, 22.0, 0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn zero_samples_is_refused() {
        let lr =
            LabelRaster::from_labels(Grid::new(1, 1, [1.0, 0.0, 0.0, 0.0, -1.0, 0.0]), 1, vec![1]);
        let data = [1.0f32];
        let err = pixel_sets(
            &lr,
            &[Band::raw(BandData::F32(&data))],
            None,
            0,
            0,
            &AtomicBool::new(false),
        );
        assert!(matches!(err, Err(KernelError::Input(_))));
    }
}
