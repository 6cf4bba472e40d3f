//! Fused per-pixel rendering of the simulator's Sentinel-2 and Sentinel-1 bands.
//!
//! One pass per band over row blocks (rayon): gather the unit's spectrum by label, add the
//! within-field texture and the sensor noise, mix in snow, apply the sky (transmission,
//! cloud, cirrus, haze) interpolated on the fly from its coarser grid, and write the delivered
//! value. No full-size temporaries: a 10980² band is 480 MB of float32, and numpy's chain of
//! takes, upsamplings and conversions over it cost more than the arithmetic.
//!
//! Random draws come from a counter-based hash of (seed, pixel index), so the result does not
//! depend on how rows are split between threads: same seed, same bytes.

use rayon::prelude::*;

use crate::kernel_error::{input_error, KernelError};

const ROWS_PER_BLOCK: usize = 32;
/// Reflectance floor of the surface (no real pixel is black).
const SURFACE_FLOOR: f32 = 0.0005;
const SATURATED: u16 = 65535;

/// A field on a grid `factor` (1 or 2) times coarser than the output, read with the
/// simulator's 2x interpolation (a fine pixel is 3/4 of its parent, 1/4 of the neighbour on
/// its side, edges clamped).
#[derive(Clone, Copy)]
pub struct Coarse<'a> {
    pub data: &'a [f32],
    pub height: usize,
    pub width: usize,
}

/// The sky over one band, its fields on the sky grid (all of one shape).
#[derive(Clone, Copy, Default)]
pub struct SkyBand<'a> {
    /// Share of the surface signal that reaches the sensor.
    pub through: Option<Coarse<'a>>,
    /// Cloud opacity and the cloud's reflectance in this band.
    pub opacity: Option<(Coarse<'a>, f32)>,
    /// Cirrus reflectance and this band's cirrus factor.
    pub cirrus: Option<(Coarse<'a>, f32)>,
    /// Haze patches (blue reflectance) and this band's haze factor.
    pub patches: Option<(Coarse<'a>, f32)>,
    /// Uniform additive haze.
    pub haze: f32,
}

/// Everything at the output resolution that one optical band is made from.
pub struct SurfaceInputs<'a> {
    pub labels: &'a [i32],
    pub height: usize,
    pub width: usize,
    /// Per unit: mean reflectance and the texture's slope along the unit's mixing line.
    pub mean: &'a [f32],
    pub slope: &'a [f32],
    pub texture: &'a [f32],
    /// Sensor noise (0.002 + 1 % of the signal, uniform) drawn from this seed; none if `None`.
    pub noise_seed: Option<u64>,
    /// Snow fraction per pixel and the snow pack's reflectance in this band.
    pub snow: Option<(&'a [f32], f32)>,
}

/// Where the rendered values go.
pub enum Output<'a> {
    /// Reflectance as is (the noise-free views the SCL is computed from).
    Reflectance(&'a mut [f32]),
    /// uint16 x 10⁴ (floor 1: 0 is nodata); optionally the clear-sky surface too, and
    /// `saturated` pixels (a mask on a grid `factor` times coarser) set to 65535.
    Digital {
        observed: &'a mut [u16],
        surface: Option<&'a mut [u16]>,
        saturated: Option<(&'a [bool], usize, usize)>,
    },
}

/// SplitMix64's finaliser: a well-mixed 64-bit value for each (seed, counter).
#[inline]
fn hash(seed: u64, counter: u64) -> u64 {
    let mut z = seed.wrapping_add(counter.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Zero-mean, unit-variance uniform variate of pixel `counter`.
#[inline]
fn uniform(seed: u64, counter: u64) -> f32 {
    let unit = (hash(seed, counter) >> 40) as f32 * (1.0 / (1u64 << 24) as f32);
    (unit - 0.5) * 12f32.sqrt()
}

/// Parent and side neighbour of fine index `i` on a coarse axis of `n` cells.
#[inline]
fn taps(i: usize, n: usize, factor: usize) -> (usize, usize) {
    if factor == 1 {
        let p = i.min(n - 1);
        return (p, p);
    }
    let p = (i / 2).min(n - 1);
    let q = if i.is_multiple_of(2) {
        p.saturating_sub(1)
    } else {
        (p + 1).min(n - 1)
    };
    (p, q)
}

/// The sky grid's factor for an output of `height` x `width`, checking the shape covers it.
fn factor_of(
    coarse: &Coarse<'_>,
    height: usize,
    width: usize,
    what: &str,
) -> Result<usize, KernelError> {
    if coarse.data.len() != coarse.height * coarse.width || coarse.height == 0 || coarse.width == 0
    {
        return Err(input_error(format!(
            "{what}: data does not match its shape"
        )));
    }
    for factor in [1, 2] {
        if coarse.height == height.div_ceil(factor) && coarse.width == width.div_ceil(factor) {
            return Ok(factor);
        }
    }
    Err(input_error(format!(
        "{what} has shape ({}, {}), not the output's ({height}, {width}) or half of it",
        coarse.height, coarse.width
    )))
}

/// One output row of a coarse field, interpolated into `row` (length = output width).
fn interpolate_row(
    coarse: &Coarse<'_>,
    factor: usize,
    r: usize,
    row: &mut [f32],
    blend: &mut [f32],
) {
    let (pr, qr) = taps(r, coarse.height, factor);
    let a = &coarse.data[pr * coarse.width..(pr + 1) * coarse.width];
    if factor == 1 {
        row.copy_from_slice(&a[..row.len()]);
        return;
    }
    let b = &coarse.data[qr * coarse.width..(qr + 1) * coarse.width];
    for ((v, &x), &y) in blend.iter_mut().zip(a).zip(b) {
        *v = 0.75 * x + 0.25 * y;
    }
    for (c, out) in row.iter_mut().enumerate() {
        let (pc, qc) = taps(c, coarse.width, 2);
        *out = 0.75 * blend[pc] + 0.25 * blend[qc];
    }
}

#[inline]
fn to_digital(reflectance: f32) -> u16 {
    (reflectance * 10000.0)
        .clamp(1.0, 65535.0)
        .round_ties_even() as u16
}

fn check_len(len: usize, expected: usize, what: &str) -> Result<(), KernelError> {
    if len != expected {
        return Err(input_error(format!(
            "{what} has {len} values, expected {expected}"
        )));
    }
    Ok(())
}

/// Renders one optical band (see the module docs) into `output`.
pub fn render_optical(
    inputs: &SurfaceInputs<'_>,
    sky: &SkyBand<'_>,
    output: Output<'_>,
) -> Result<(), KernelError> {
    let (h, w) = (inputs.height, inputs.width);
    let n = h * w;
    if n == 0 {
        return Err(input_error("the output is empty"));
    }
    check_len(inputs.labels.len(), n, "labels")?;
    check_len(inputs.texture.len(), n, "texture")?;
    check_len(inputs.slope.len(), inputs.mean.len(), "slope")?;
    if let Some((snow, _)) = inputs.snow {
        check_len(snow.len(), n, "snow fraction")?;
    }
    let n_units = inputs.mean.len();
    if let Some(bad) = inputs
        .labels
        .iter()
        .find(|&&l| l < 0 || l as usize >= n_units)
    {
        return Err(input_error(format!(
            "label {bad} is not a unit (0..{n_units})"
        )));
    }
    let fields: Vec<(Coarse<'_>, usize)> = [
        sky.through.map(|c| (c, "transmission")),
        sky.opacity.map(|(c, _)| (c, "opacity")),
        sky.cirrus.map(|(c, _)| (c, "cirrus")),
        sky.patches.map(|(c, _)| (c, "haze patches")),
    ]
    .into_iter()
    .flatten()
    .map(|(c, what)| factor_of(&c, h, w, what).map(|f| (c, f)))
    .collect::<Result<_, _>>()?;
    let coefficients = [
        1.0,
        sky.opacity.map_or(0.0, |(_, k)| k),
        sky.cirrus.map_or(0.0, |(_, k)| k),
        sky.patches.map_or(0.0, |(_, k)| k),
    ];
    // which coefficient goes with each present field (transmission multiplies, others add)
    let kinds: Vec<usize> = [
        sky.through.is_some(),
        sky.opacity.is_some(),
        sky.cirrus.is_some(),
        sky.patches.is_some(),
    ]
    .iter()
    .enumerate()
    .filter_map(|(k, &present)| present.then_some(k))
    .collect();

    let surface_row = |r: usize, row: &mut [f32]| {
        let start = r * w;
        let labels = &inputs.labels[start..start + w];
        let texture = &inputs.texture[start..start + w];
        for (c, v) in row.iter_mut().enumerate() {
            let unit = labels[c] as usize;
            let mut x = inputs.mean[unit] + inputs.slope[unit] * texture[c];
            if let Some(seed) = inputs.noise_seed {
                x += uniform(seed, (start + c) as u64) * (0.01 * x + 0.002);
            }
            x = x.max(SURFACE_FLOOR);
            if let Some((snow, value)) = inputs.snow {
                let f = snow[start + c];
                x = x * (1.0 - f) + f * value;
            }
            *v = x;
        }
    };
    let sky_row = |r: usize, row: &mut [f32], field: &mut [f32], blend: &mut [f32]| {
        for (&(coarse, factor), &kind) in fields.iter().zip(&kinds) {
            interpolate_row(&coarse, factor, r, field, blend);
            if kind == 0 {
                row.iter_mut().zip(field.iter()).for_each(|(v, t)| *v *= t);
            } else {
                let k = coefficients[kind];
                row.iter_mut()
                    .zip(field.iter())
                    .for_each(|(v, f)| *v += f * k);
            }
        }
        row.iter_mut().for_each(|v| *v += sky.haze);
    };
    let block = ROWS_PER_BLOCK * w;
    match output {
        Output::Reflectance(out) => {
            check_len(out.len(), n, "output")?;
            out.par_chunks_mut(block)
                .enumerate()
                .for_each(|(b, chunk)| {
                    let (mut field, mut blend) = (vec![0f32; w], vec![0f32; w.div_ceil(2) + 1]);
                    for (i, row) in chunk.chunks_mut(w).enumerate() {
                        let r = b * ROWS_PER_BLOCK + i;
                        surface_row(r, row);
                        sky_row(r, row, &mut field, &mut blend);
                    }
                });
        }
        Output::Digital {
            observed,
            surface,
            saturated,
        } => {
            check_len(observed.len(), n, "output")?;
            if let Some(s) = &surface {
                check_len(s.len(), n, "surface output")?;
            }
            let saturated = match saturated {
                Some((mask, mh, mw)) => {
                    check_len(mask.len(), mh * mw, "saturated mask")?;
                    let factor = [1, 2]
                        .into_iter()
                        .find(|&f| mh == h.div_ceil(f) && mw == w.div_ceil(f))
                        .ok_or_else(|| input_error("saturated mask does not match the output"))?;
                    Some((mask, mw, factor))
                }
                None => None,
            };
            let mut surfaces: Vec<Option<&mut [u16]>> = match surface {
                Some(s) => s.chunks_mut(block).map(Some).collect(),
                None => (0..n.div_ceil(block)).map(|_| None).collect(),
            };
            observed
                .par_chunks_mut(block)
                .zip(surfaces.par_iter_mut())
                .enumerate()
                .for_each(|(b, (chunk, surface))| {
                    let mut row = vec![0f32; w];
                    let (mut field, mut blend) = (vec![0f32; w], vec![0f32; w.div_ceil(2) + 1]);
                    for (i, out) in chunk.chunks_mut(w).enumerate() {
                        let r = b * ROWS_PER_BLOCK + i;
                        surface_row(r, &mut row);
                        if let Some(s) = surface.as_deref_mut() {
                            let s = &mut s[i * w..(i + 1) * w];
                            s.iter_mut()
                                .zip(&row)
                                .for_each(|(d, &v)| *d = to_digital(v));
                        }
                        sky_row(r, &mut row, &mut field, &mut blend);
                        out.iter_mut()
                            .zip(&row)
                            .for_each(|(d, &v)| *d = to_digital(v));
                        if let Some((mask, mw, factor)) = saturated {
                            let mask_row = &mask[(r / factor) * mw..(r / factor + 1) * mw];
                            for (c, d) in out.iter_mut().enumerate() {
                                if mask_row[c / factor] {
                                    *d = SATURATED;
                                }
                            }
                        }
                    }
                });
        }
    }
    Ok(())
}

/// Everything one Sentinel-1 polarisation is made from (10 m output).
pub struct RadarInputs<'a> {
    pub labels: &'a [i32],
    pub height: usize,
    pub width: usize,
    /// Mean γ⁰ (dB) per unit.
    pub db: &'a [f32],
    pub texture: &'a [f32],
    /// dB of texture per unit of `texture`.
    pub texture_db: f32,
    /// dB added per column (the incidence ramp across the swath).
    pub ramp: &'a [f32],
    /// Speckle: 65 536 quantiles (dB), drawn per cell of the grid twice as coarse and
    /// interpolated (the 20 m looks of the GRD resampled to 10 m).
    pub speckle_table: &'a [f32],
    pub seed: u64,
    /// dB added per pixel (wet snow), if any.
    pub extra_db: Option<&'a [f32]>,
    /// Values are rounded to multiples of 1/`quantum` dB (lets deflate compress them).
    pub quantum: f32,
}

/// Renders one Sentinel-1 polarisation (γ⁰ dB) into `out`.
pub fn render_radar(inputs: &RadarInputs<'_>, out: &mut [f32]) -> Result<(), KernelError> {
    let (h, w) = (inputs.height, inputs.width);
    let n = h * w;
    if n == 0 {
        return Err(input_error("the output is empty"));
    }
    check_len(inputs.labels.len(), n, "labels")?;
    check_len(inputs.texture.len(), n, "texture")?;
    check_len(inputs.ramp.len(), w, "ramp")?;
    check_len(inputs.speckle_table.len(), 65536, "speckle table")?;
    check_len(out.len(), n, "output")?;
    if let Some(extra) = inputs.extra_db {
        check_len(extra.len(), n, "extra dB")?;
    }
    let n_units = inputs.db.len();
    if let Some(bad) = inputs
        .labels
        .iter()
        .find(|&&l| l < 0 || l as usize >= n_units)
    {
        return Err(input_error(format!(
            "label {bad} is not a unit (0..{n_units})"
        )));
    }
    let (ch, cw) = (h.div_ceil(2), w.div_ceil(2));
    let speckle_at = |i: usize, j: usize| -> f32 {
        let bits = hash(inputs.seed, (i * cw + j) as u64);
        inputs.speckle_table[(bits >> 48) as usize]
    };
    out.par_chunks_mut(ROWS_PER_BLOCK * w)
        .enumerate()
        .for_each(|(b, chunk)| {
            let (mut upper, mut lower, mut blend) =
                (vec![0f32; cw], vec![0f32; cw], vec![0f32; cw]);
            for (i, row) in chunk.chunks_mut(w).enumerate() {
                let r = b * ROWS_PER_BLOCK + i;
                let (pr, qr) = taps(r, ch, 2);
                for j in 0..cw {
                    upper[j] = speckle_at(pr, j);
                    lower[j] = speckle_at(qr, j);
                }
                for ((v, &x), &y) in blend.iter_mut().zip(&upper).zip(&lower) {
                    *v = 0.75 * x + 0.25 * y;
                }
                let start = r * w;
                for (c, v) in row.iter_mut().enumerate() {
                    let (pc, qc) = taps(c, cw, 2);
                    let unit = inputs.labels[start + c] as usize;
                    let mut x = inputs.db[unit]
                        + inputs.texture_db * inputs.texture[start + c]
                        + inputs.ramp[c]
                        + 0.75 * blend[pc]
                        + 0.25 * blend[qc];
                    if let Some(extra) = inputs.extra_db {
                        x += extra[start + c];
                    }
                    *v = (x * inputs.quantum).round_ties_even() / inputs.quantum;
                }
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(
        labels: &'a [i32],
        texture: &'a [f32],
        mean: &'a [f32],
        slope: &'a [f32],
    ) -> SurfaceInputs<'a> {
        SurfaceInputs {
            labels,
            height: 4,
            width: 4,
            mean,
            slope,
            texture,
            noise_seed: None,
            snow: None,
        }
    }

    #[test]
    fn surface_is_mean_plus_texture_along_the_slope() {
        let labels = [0, 1, 1, 0].repeat(4);
        let texture: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
        let (mean, slope) = ([0.1f32, 0.3], [0.0f32, 0.05]);
        let mut out = vec![0f32; 16];
        let input = inputs(&labels, &texture, &mean, &slope);
        render_optical(&input, &SkyBand::default(), Output::Reflectance(&mut out)).unwrap();
        for i in 0..16 {
            let expected = mean[labels[i] as usize] + slope[labels[i] as usize] * texture[i];
            assert!((out[i] - expected).abs() < 1e-6);
        }
    }

    #[test]
    fn half_resolution_sky_is_interpolated_three_quarters_to_the_parent() {
        let labels = [0i32; 16];
        let texture = [0f32; 16];
        let (mean, slope) = ([0.2f32], [0f32]);
        // opacity 0 in the west column of the 2x2 sky grid, 1 in the east one
        let opacity = [0f32, 1.0, 0.0, 1.0];
        let coarse = Coarse {
            data: &opacity,
            height: 2,
            width: 2,
        };
        let sky = SkyBand {
            opacity: Some((coarse, 0.5)),
            haze: 0.01,
            ..SkyBand::default()
        };
        let mut out = vec![0f32; 16];
        render_optical(
            &inputs(&labels, &texture, &mean, &slope),
            &sky,
            Output::Reflectance(&mut out),
        )
        .unwrap();
        let expected_opacity = [0.0, 0.25, 0.75, 1.0];
        for (c, alpha) in expected_opacity.iter().enumerate() {
            assert!(
                (out[c] - (0.2 + 0.5 * alpha + 0.01)).abs() < 1e-6,
                "{c}: {}",
                out[c]
            );
        }
    }

    #[test]
    fn digital_output_is_deterministic_and_noise_has_the_stated_spread() {
        let (h, w) = (64, 64);
        let labels = vec![0i32; h * w];
        let texture = vec![0f32; h * w];
        let (mean, slope) = ([0.3f32], [0f32]);
        let render = |seed| {
            let mut input = inputs(&labels, &texture, &mean, &slope);
            input.height = h;
            input.width = w;
            input.noise_seed = Some(seed);
            let mut observed = vec![0u16; h * w];
            let mut surface = vec![0u16; h * w];
            let output = Output::Digital {
                observed: &mut observed,
                surface: Some(&mut surface),
                saturated: None,
            };
            render_optical(&input, &SkyBand::default(), output).unwrap();
            assert_eq!(observed, surface); // no sky: the surface is what the sensor sees
            observed
        };
        let (a, b, c) = (render(7), render(7), render(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let values: Vec<f64> = a.iter().map(|&v| v as f64 / 1e4).collect();
        let mean_value = values.iter().sum::<f64>() / values.len() as f64;
        let std = (values.iter().map(|v| (v - mean_value).powi(2)).sum::<f64>()
            / values.len() as f64)
            .sqrt();
        assert!((mean_value - 0.3).abs() < 0.001, "{mean_value}");
        assert!((std - 0.005).abs() < 0.0005, "{std}"); // 0.002 + 1 % of 0.3
    }

    #[test]
    fn labels_outside_the_spectra_are_refused() {
        let labels = [0i32, 5, 0, 0];
        let texture = [0f32; 4];
        let mut input = inputs(&labels, &texture, &[0.1], &[0.0]);
        input.height = 2;
        input.width = 2;
        let mut out = vec![0f32; 4];
        let err = render_optical(&input, &SkyBand::default(), Output::Reflectance(&mut out));
        assert!(err.unwrap_err().to_string().contains("label 5"));
    }

    #[test]
    fn radar_speckle_is_centred_and_deterministic() {
        let (h, w) = (200, 200);
        let labels = vec![0i32; h * w];
        let texture = vec![0f32; h * w];
        let ramp = vec![0f32; w];
        let table: Vec<f32> = (0..65536)
            .map(|i| (i as f32 - 32767.5) / 32768.0 * 3.0)
            .collect();
        let inputs = RadarInputs {
            labels: &labels,
            height: h,
            width: w,
            db: &[-12.0],
            texture: &texture,
            texture_db: 0.5,
            ramp: &ramp,
            speckle_table: &table,
            seed: 3,
            extra_db: None,
            quantum: 64.0,
        };
        let (mut a, mut b) = (vec![0f32; h * w], vec![0f32; h * w]);
        render_radar(&inputs, &mut a).unwrap();
        render_radar(&inputs, &mut b).unwrap();
        assert_eq!(a, b);
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        assert!((mean + 12.0).abs() < 0.05, "{mean}");
        assert!(a.iter().all(|v| (v * 64.0).fract() == 0.0));
    }
}
