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
    double_row(&blend[..coarse.width], row);
}

/// `row` (output width) from `coarse` (half of it, rounded up) by the 2x interpolation: pixel
/// 2j is 3/4 of cell j and 1/4 of cell j - 1, pixel 2j + 1 1/4 of cell j + 1 (edges clamped).
/// Same values as `taps`, without its per-pixel index arithmetic.
fn double_row(coarse: &[f32], row: &mut [f32]) {
    let n = coarse.len();
    for (j, pair) in row.chunks_mut(2).enumerate() {
        let centre = 0.75 * coarse[j];
        pair[0] = centre + 0.25 * coarse[j.saturating_sub(1)];
        if let Some(odd) = pair.get_mut(1) {
            *odd = centre + 0.25 * coarse[(j + 1).min(n - 1)];
        }
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
            let mut speckle = vec![0f32; w];
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
                double_row(&blend, &mut speckle);
                let start = r * w;
                for (c, v) in row.iter_mut().enumerate() {
                    let unit = inputs.labels[start + c] as usize;
                    let mut x = inputs.db[unit]
                        + inputs.texture_db * inputs.texture[start + c]
                        + inputs.ramp[c]
                        + speckle[c];
                    if let Some(extra) = inputs.extra_db {
                        x += extra[start + c];
                    }
                    *v = (x * inputs.quantum).round_ties_even() / inputs.quantum;
                }
            }
        });
    Ok(())
}

/// Bilinear sampling positions along one axis: output pixel `i` reads the coarse axis at
/// `(i + 0.5) / factor - 0.5 + offset`, clamped to the grid (the simulator's `noise.upsample`).
pub struct AxisWeights {
    pub lower: Vec<usize>,
    pub upper: Vec<usize>,
    pub weight: Vec<f32>,
}

impl AxisWeights {
    pub fn new(n: usize, factor: f64, offset: f64, size: usize) -> Self {
        let mut axis = AxisWeights {
            lower: Vec::with_capacity(n),
            upper: Vec::with_capacity(n),
            weight: Vec::with_capacity(n),
        };
        let last = (size - 1) as f64;
        for i in 0..n {
            let pos = ((i as f64 + 0.5) / factor - 0.5 + offset).clamp(0.0, last);
            let lower = (pos.floor() as usize).min(size - 1);
            axis.lower.push(lower);
            axis.upper.push((lower + 1).min(size - 1));
            axis.weight.push((pos - lower as f64) as f32);
        }
        axis
    }
}

/// A coarse field read bilinearly at an integer or fractional `factor` (see `AxisWeights`).
pub struct Bilinear<'a> {
    field: Coarse<'a>,
    rows: AxisWeights,
    cols: AxisWeights,
}

impl<'a> Bilinear<'a> {
    pub fn new(
        field: Coarse<'a>,
        factor: f64,
        offset: f64,
        height: usize,
        width: usize,
    ) -> Result<Self, KernelError> {
        if field.data.len() != field.height * field.width || field.height == 0 || field.width == 0 {
            return Err(input_error("coarse field: data does not match its shape"));
        }
        if !(factor.is_finite() && factor > 0.0 && offset.is_finite()) {
            return Err(input_error(format!(
                "upsampling factor {factor} / offset {offset} must be finite, factor > 0"
            )));
        }
        Ok(Bilinear {
            field,
            rows: AxisWeights::new(height, factor, offset, field.height),
            cols: AxisWeights::new(width, factor, offset, field.width),
        })
    }

    /// Coarse row `i` interpolated along the columns into `half` (output width).
    fn columns(&self, i: usize, half: &mut [f32]) {
        let row = &self.field.data[i * self.field.width..(i + 1) * self.field.width];
        for (c, v) in half.iter_mut().enumerate() {
            let w = self.cols.weight[c];
            *v = row[self.cols.lower[c]] * (1.0 - w) + row[self.cols.upper[c]] * w;
        }
    }

    /// Output row `r` into `out`; `a` and `b` are scratch rows of the output width.
    pub fn row(&self, r: usize, out: &mut [f32], a: &mut [f32], b: &mut [f32]) {
        let w = self.rows.weight[r];
        self.columns(self.rows.lower[r], a);
        self.columns(self.rows.upper[r], b);
        for ((v, &x), &y) in out.iter_mut().zip(a.iter()).zip(b.iter()) {
            *v = x * (1.0 - w) + y * w;
        }
    }
}

/// Bilinear upsampling of `field` into `out` (`height` x `width`), row blocks in parallel.
pub fn upsample(
    field: Coarse<'_>,
    factor: f64,
    offset: f64,
    out: &mut [f32],
    height: usize,
    width: usize,
) -> Result<(), KernelError> {
    check_len(out.len(), height * width, "output")?;
    if out.is_empty() {
        return Err(input_error("the output is empty"));
    }
    let field = Bilinear::new(field, factor, offset, height, width)?;
    out.par_chunks_mut(ROWS_PER_BLOCK * width)
        .enumerate()
        .for_each(|(b, chunk)| {
            let (mut a, mut c) = (vec![0f32; width], vec![0f32; width]);
            for (i, row) in chunk.chunks_mut(width).enumerate() {
                field.row(b * ROWS_PER_BLOCK + i, row, &mut a, &mut c);
            }
        });
    Ok(())
}

/// Share of each pixel under visible snow: the coarse snow `field` upsampled by `factor`,
/// clipped to [0, 1] and scaled by the pixel's unit's `visible` share, into `out`.
pub fn snow_fraction(
    field: Coarse<'_>,
    factor: f64,
    labels: &[i32],
    visible: &[f32],
    out: &mut [f32],
    width: usize,
) -> Result<(), KernelError> {
    check_len(labels.len(), out.len(), "labels")?;
    if width == 0 || out.is_empty() || !out.len().is_multiple_of(width) {
        return Err(input_error("the output is empty or not whole rows"));
    }
    let n_units = visible.len();
    if let Some(bad) = labels.iter().find(|&&l| l < 0 || l as usize >= n_units) {
        return Err(input_error(format!(
            "label {bad} is not a unit (0..{n_units})"
        )));
    }
    let field = Bilinear::new(field, factor, 0.0, out.len() / width, width)?;
    out.par_chunks_mut(ROWS_PER_BLOCK * width)
        .enumerate()
        .for_each(|(b, chunk)| {
            let (mut a, mut c) = (vec![0f32; width], vec![0f32; width]);
            for (i, row) in chunk.chunks_mut(width).enumerate() {
                let r = b * ROWS_PER_BLOCK + i;
                field.row(r, row, &mut a, &mut c);
                let labels = &labels[r * width..(r + 1) * width];
                for (v, &l) in row.iter_mut().zip(labels) {
                    *v = v.clamp(0.0, 1.0) * visible[l as usize];
                }
            }
        });
    Ok(())
}

/// Everything the within-field texture of a 10 m grid is made from.
pub struct TextureInputs<'a> {
    pub labels: &'a [i32],
    pub height: usize,
    pub width: usize,
    /// Smooth patches on the grid twice as coarse (read with the 2x interpolation).
    pub patches: Coarse<'a>,
    /// Per unit: amplitude of the patches and of the per-pixel grain.
    pub patchy: &'a [f32],
    pub grainy: &'a [f32],
    /// 65 536 quantiles of the grain's distribution, drawn per pixel from `seed`.
    pub grain_table: &'a [f32],
    pub seed: u64,
}

/// Texture = patches x patchy[unit] + grain x grainy[unit], in one pass into `out`.
pub fn render_texture(inputs: &TextureInputs<'_>, out: &mut [f32]) -> Result<(), KernelError> {
    let (h, w) = (inputs.height, inputs.width);
    let n = h * w;
    if n == 0 {
        return Err(input_error("the output is empty"));
    }
    check_len(inputs.labels.len(), n, "labels")?;
    check_len(out.len(), n, "output")?;
    check_len(inputs.grainy.len(), inputs.patchy.len(), "grainy")?;
    check_len(inputs.grain_table.len(), 65536, "grain table")?;
    if factor_of(&inputs.patches, h, w, "patches")? != 2 {
        return Err(input_error("patches must be on the grid twice as coarse"));
    }
    let n_units = inputs.patchy.len();
    if let Some(bad) = inputs
        .labels
        .iter()
        .find(|&&l| l < 0 || l as usize >= n_units)
    {
        return Err(input_error(format!(
            "label {bad} is not a unit (0..{n_units})"
        )));
    }
    out.par_chunks_mut(ROWS_PER_BLOCK * w)
        .enumerate()
        .for_each(|(b, chunk)| {
            let (mut field, mut blend) = (vec![0f32; w], vec![0f32; w.div_ceil(2) + 1]);
            for (i, row) in chunk.chunks_mut(w).enumerate() {
                let r = b * ROWS_PER_BLOCK + i;
                interpolate_row(&inputs.patches, 2, r, &mut field, &mut blend);
                let start = r * w;
                let labels = &inputs.labels[start..start + w];
                for (c, v) in row.iter_mut().enumerate() {
                    let unit = labels[c] as usize;
                    let bits = hash(inputs.seed, (start + c) as u64);
                    let grain = inputs.grain_table[(bits >> 48) as usize];
                    *v = field[c] * inputs.patchy[unit] + grain * inputs.grainy[unit];
                }
            }
        });
    Ok(())
}

/// Polygon edges in pixel units (row axis pointing south), each with the signed value it
/// burns: + on a polygon's west side, - on its east side.
pub struct Edges<'a> {
    pub ax: &'a [f64],
    pub ay: &'a [f64],
    pub bx: &'a [f64],
    pub by: &'a [f64],
    pub value: &'a [i32],
}

/// Scanline fill of non-overlapping convex polygons into `labels` (`height` x `width`):
/// each edge marks, on every row whose pixel centre it spans (half-open in y), the first
/// pixel centre east of its crossing; a running sum along each row then gives the labels.
pub fn burn_edges(
    edges: &Edges<'_>,
    labels: &mut [i32],
    height: usize,
    width: usize,
) -> Result<(), KernelError> {
    let n = edges.ax.len();
    for (len, what) in [
        (edges.ay.len(), "ay"),
        (edges.bx.len(), "bx"),
        (edges.by.len(), "by"),
        (edges.value.len(), "value"),
    ] {
        check_len(len, n, what)?;
    }
    check_len(labels.len(), height * width, "labels")?;
    let stride = width + 1;
    let mut marks = vec![0i32; height * stride];
    for e in 0..n {
        let (ax, ay, bx, by) = (edges.ax[e], edges.ay[e], edges.bx[e], edges.by[e]);
        let (top, bottom) = (ay.min(by), ay.max(by));
        let first = (top - 0.5).ceil().clamp(0.0, height as f64) as usize;
        let last = (bottom - 0.5).ceil().clamp(0.0, height as f64) as usize;
        for r in first..last {
            let t = (r as f64 + 0.5 - ay) / (by - ay);
            let x = ax + t * (bx - ax);
            let column = (x - 0.5).ceil().clamp(0.0, width as f64) as usize;
            let mark = &mut marks[r * stride + column];
            *mark = mark.wrapping_add(edges.value[e]);
        }
    }
    labels
        .par_chunks_mut(width)
        .zip(marks.par_chunks(stride))
        .for_each(|(row, marks)| {
            let mut sum = 0i32;
            for (v, &m) in row.iter_mut().zip(marks) {
                sum = sum.wrapping_add(m);
                *v = sum;
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

    #[test]
    fn upsampling_matches_the_bilinear_formula() {
        let data = [0f32, 1.0, 2.0, 3.0];
        let field = Coarse {
            data: &data,
            height: 2,
            width: 2,
        };
        let mut out = vec![0f32; 16];
        upsample(field, 2.0, 0.0, &mut out, 4, 4).unwrap();
        // columns at positions -0.25 (clamped), 0.25, 0.75, 1.25 (clamped)
        let along = [0.0f32, 0.25, 0.75, 1.0];
        for r in 0..4 {
            for c in 0..4 {
                let expected = along[c] + 2.0 * along[r];
                assert!((out[r * 4 + c] - expected).abs() < 1e-6, "{r} {c}");
            }
        }
    }

    #[test]
    fn snow_fraction_is_clipped_and_scaled_by_the_unit() {
        let data = [2.0f32, -1.0];
        let field = Coarse {
            data: &data,
            height: 1,
            width: 2,
        };
        let labels = [0i32, 1, 1, 0];
        let mut out = vec![0f32; 4];
        snow_fraction(field, 1.0, &labels, &[1.0, 0.5], &mut out, 2).unwrap();
        assert_eq!(out, [1.0, 0.0, 0.5, 0.0]);
    }

    #[test]
    fn burning_a_square_fills_the_pixel_centres_inside() {
        // counter-clockwise in map axes = clockwise in (column, row): a square from 1 to 3
        let (ax, ay, bx, by) = (
            [1.0, 3.0, 3.0, 1.0],
            [3.0, 3.0, 1.0, 1.0],
            [3.0, 3.0, 1.0, 1.0],
            [3.0, 1.0, 1.0, 3.0],
        );
        let value = [0, -7, 0, 7];
        let edges = Edges {
            ax: &ax,
            ay: &ay,
            bx: &bx,
            by: &by,
            value: &value,
        };
        let mut labels = vec![0i32; 16];
        burn_edges(&edges, &mut labels, 4, 4).unwrap();
        let expected = [0, 0, 0, 0, 0, 7, 7, 0, 0, 7, 7, 0, 0, 0, 0, 0];
        assert_eq!(labels, expected);
    }

    #[test]
    fn texture_is_patches_and_grain_scaled_per_unit() {
        let (h, w) = (64, 64);
        let labels: Vec<i32> = (0..h * w).map(|i| ((i % w) >= w / 2) as i32).collect();
        let patches = vec![1f32; (h / 2) * (w / 2)];
        let table: Vec<f32> = (0..65536)
            .map(|i| (i as f32 - 32767.5) / 32768.0 * 3f32.sqrt())
            .collect();
        let inputs = TextureInputs {
            labels: &labels,
            height: h,
            width: w,
            patches: Coarse {
                data: &patches,
                height: h / 2,
                width: w / 2,
            },
            patchy: &[2.0, 0.0],
            grainy: &[0.0, 1.0],
            grain_table: &table,
            seed: 5,
        };
        let (mut a, mut b) = (vec![0f32; h * w], vec![0f32; h * w]);
        render_texture(&inputs, &mut a).unwrap();
        render_texture(&inputs, &mut b).unwrap();
        assert_eq!(a, b);
        let (west, east): (Vec<f32>, Vec<f32>) = (0..h * w).map(|i| (labels[i], a[i])).fold(
            (vec![], vec![]),
            |(mut west, mut east), (l, v)| {
                if l == 0 {
                    west.push(v)
                } else {
                    east.push(v)
                }
                (west, east)
            },
        );
        assert!(west.iter().all(|&v| (v - 2.0).abs() < 1e-6));
        let var = east.iter().map(|v| v * v).sum::<f32>() / east.len() as f32;
        assert!((var - 1.0).abs() < 0.1, "{var}");
    }
}
