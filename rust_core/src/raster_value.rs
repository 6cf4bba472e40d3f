//! Pixel values of any numeric raster dtype seen as `f64`, and a band borrowed with its
//! scale, offset and nodata: the input of the zonal and pixel-set kernels.

use crate::kernel_error::{input_error, KernelError};

/// A numeric pixel type a kernel can read.
pub trait RasterValue: Copy + Send + Sync {
    fn to_f64(self) -> f64;
}

macro_rules! impl_raster_value {
    ($($t:ty),*) => {$(
        impl RasterValue for $t {
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
impl_raster_value!(u8, u16, i16, f32, f64);

/// Integer pixel types: read exactly as `i32`, nodata compared in the native type.
trait IntValue: RasterValue + PartialEq {
    fn to_i32(self) -> i32;
    /// `v` in this type when it is exactly representable (else no pixel can equal it).
    fn from_f64_exact(v: f64) -> Option<Self>;
}

macro_rules! impl_int_value {
    ($($t:ty),*) => {$(
        impl IntValue for $t {
            #[inline(always)]
            fn to_i32(self) -> i32 {
                i32::from(self)
            }
            fn from_f64_exact(v: f64) -> Option<Self> {
                let t = v as $t; // saturating; NaN gives 0, which then fails the round trip
                (t as f64 == v).then_some(t)
            }
        }
    )*};
}
impl_int_value!(u8, u16, i16);

/// Borrowed pixels of one band, row-major, in the dtype they were read in (never copied).
#[derive(Clone, Copy, Debug)]
pub enum BandData<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    I16(&'a [i16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// Runs `$body` with `$d` bound to the typed slice, whatever the dtype; the match happens once
/// per call, the loops inside `$body` are monomorphised per dtype.
macro_rules! with_band_data {
    ($data:expr, $d:ident => $body:expr) => {
        match $data {
            BandData::U8($d) => $body,
            BandData::U16($d) => $body,
            BandData::I16($d) => $body,
            BandData::F32($d) => $body,
            BandData::F64($d) => $body,
        }
    };
}

/// Raw values of one band gathered at a parcel's pixels, in a buffer reused from parcel to
/// parcel: exact `i32` for integer dtypes (`ints`), `f64` for float ones (`floats`).
#[derive(Clone, Debug, Default)]
pub struct Gathered {
    pub ints: Vec<i32>,
    pub floats: Vec<f64>,
    pub is_int: bool,
}

impl Gathered {
    /// Keeps the values whose `keep` flag is set, in order (branch-free compaction).
    pub fn compact(&mut self, keep: &[bool]) {
        if self.is_int {
            compact(&mut self.ints, keep);
        } else {
            compact(&mut self.floats, keep);
        }
    }

    /// Replaces `out` by the values scaled, `raw * scale + offset`.
    pub fn scaled(&self, scale: f64, offset: f64, out: &mut Vec<f64>) {
        out.clear();
        if self.is_int {
            out.extend(self.ints.iter().map(|&v| f64::from(v) * scale + offset));
        } else {
            out.extend(self.floats.iter().map(|&v| v * scale + offset));
        }
    }
}

fn compact<T: Copy>(values: &mut Vec<T>, keep: &[bool]) {
    let mut kept = 0;
    for k in 0..values.len() {
        values[kept] = values[k];
        kept += usize::from(keep[k]);
    }
    values.truncate(kept);
}

/// One band of an acquisition: raw pixels plus how to read them.
///
/// The physical value of a pixel is `raw * scale + offset` (S2 L2A: scale 1e-4, offset 0 or
/// -0.1). A pixel is nodata when its raw value is NaN (float bands, always) or equals `nodata`.
#[derive(Clone, Copy, Debug)]
pub struct Band<'a> {
    pub data: BandData<'a>,
    pub scale: f64,
    pub offset: f64,
    pub nodata: Option<f64>,
}

impl<'a> Band<'a> {
    /// A band read as is: scale 1, offset 0, no nodata value (NaN still counts as nodata).
    pub fn raw(data: BandData<'a>) -> Self {
        Self {
            data,
            scale: 1.0,
            offset: 0.0,
            nodata: None,
        }
    }

    pub fn len(&self) -> usize {
        with_band_data!(self.data, d => d.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Clears `keep[k]` where `pixels[k]` is nodata in this band.
    pub fn mark_nodata(&self, pixels: &[u32], keep: &mut [bool]) {
        match self.data {
            BandData::U8(d) => mark_int(d, pixels, keep, self.nodata),
            BandData::U16(d) => mark_int(d, pixels, keep, self.nodata),
            BandData::I16(d) => mark_int(d, pixels, keep, self.nodata),
            BandData::F32(d) => mark_float(d, pixels, keep, self.nodata),
            BandData::F64(d) => mark_float(d, pixels, keep, self.nodata),
        }
    }

    /// Replaces `out` by the raw values of `pixels` and, in the same read, clears `keep[k]`
    /// where `pixels[k]` is nodata: each band is read once per parcel.
    pub fn gather_checking(&self, pixels: &[u32], keep: &mut [bool], out: &mut Gathered) {
        out.is_int = !matches!(self.data, BandData::F32(_) | BandData::F64(_));
        match self.data {
            BandData::U8(d) => gather_int(d, pixels, keep, self.nodata, &mut out.ints),
            BandData::U16(d) => gather_int(d, pixels, keep, self.nodata, &mut out.ints),
            BandData::I16(d) => gather_int(d, pixels, keep, self.nodata, &mut out.ints),
            BandData::F32(d) => gather_float(d, pixels, keep, self.nodata, &mut out.floats),
            BandData::F64(d) => gather_float(d, pixels, keep, self.nodata, &mut out.floats),
        }
    }

    /// `sum(weights[k] * raw[pixels[k]])`, unscaled.
    pub fn weighted_raw_sum(&self, pixels: &[u32], weights: &[f64]) -> f64 {
        with_band_data!(self.data, d => pixels
            .iter()
            .zip(weights)
            .map(|(&i, &w)| w * d[i as usize].to_f64())
            .sum())
    }

    /// Replaces `out` by the scaled values of `pixels`.
    pub fn gather_scaled(&self, pixels: &[u32], out: &mut Vec<f64>) {
        let (scale, offset) = (self.scale, self.offset);
        out.clear();
        with_band_data!(self.data, d => out.extend(
            pixels.iter().map(|&i| d[i as usize].to_f64() * scale + offset)
        ))
    }
}

fn mark_int<T: IntValue>(d: &[T], pixels: &[u32], keep: &mut [bool], nodata: Option<f64>) {
    let Some(nodata) = nodata.and_then(T::from_f64_exact) else {
        return;
    };
    for (k, &i) in keep.iter_mut().zip(pixels) {
        *k &= d[i as usize] != nodata;
    }
}

fn mark_float<T: RasterValue>(d: &[T], pixels: &[u32], keep: &mut [bool], nodata: Option<f64>) {
    for (k, &i) in keep.iter_mut().zip(pixels) {
        *k &= !is_nodata(d[i as usize].to_f64(), nodata);
    }
}

fn gather_int<T: IntValue>(
    d: &[T],
    pixels: &[u32],
    keep: &mut [bool],
    nodata: Option<f64>,
    out: &mut Vec<i32>,
) {
    out.clear();
    match nodata.and_then(T::from_f64_exact) {
        Some(nodata) => out.extend(pixels.iter().zip(keep.iter_mut()).map(|(&i, k)| {
            let v = d[i as usize];
            *k &= v != nodata;
            v.to_i32()
        })),
        None => out.extend(pixels.iter().map(|&i| d[i as usize].to_i32())),
    }
}

fn gather_float<T: RasterValue>(
    d: &[T],
    pixels: &[u32],
    keep: &mut [bool],
    nodata: Option<f64>,
    out: &mut Vec<f64>,
) {
    out.clear();
    out.extend(pixels.iter().zip(keep.iter_mut()).map(|(&i, k)| {
        let v = d[i as usize].to_f64();
        *k &= !is_nodata(v, nodata);
        v
    }));
}

#[inline(always)]
fn is_nodata(v: f64, nodata: Option<f64>) -> bool {
    v.is_nan() || nodata == Some(v)
}

/// Checks that every band has `len` pixels and a usable scale (finite, > 0: the statistics
/// rely on scaling keeping the order) and offset; errors name the band by its position.
pub fn check_bands(bands: &[Band<'_>], len: usize) -> Result<(), KernelError> {
    for (b, band) in bands.iter().enumerate() {
        if band.len() != len {
            return Err(input_error(format!(
                "band {b} has {} pixels, the label raster has {len}",
                band.len()
            )));
        }
        if !(band.scale.is_finite() && band.scale > 0.0 && band.offset.is_finite()) {
            return Err(input_error(format!(
                "band {b} needs a finite scale > 0 and a finite offset, got scale {} offset {}",
                band.scale, band.offset
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_is_always_nodata_and_the_nodata_value_too() {
        let data = [1.0f32, f32::NAN, -9999.0, 4.0];
        let band = Band {
            nodata: Some(-9999.0),
            ..Band::raw(BandData::F32(&data))
        };
        let mut keep = [true; 3];
        band.mark_nodata(&[1, 2, 3], &mut keep);
        assert_eq!(keep, [false, false, true]);
    }

    #[test]
    fn gathering_flags_nodata_and_compaction_keeps_the_rest() {
        let data = [7u16, 0, 9, 11];
        let band = Band {
            nodata: Some(0.0),
            ..Band::raw(BandData::U16(&data))
        };
        let (mut keep, mut out) = ([true, true, false, true], Gathered::default());
        band.gather_checking(&[0, 1, 2, 3], &mut keep, &mut out);
        assert!(out.is_int);
        assert_eq!(out.ints, [7, 0, 9, 11]);
        assert_eq!(keep, [true, false, false, true]);
        out.compact(&keep);
        assert_eq!(out.ints, [7, 11]);
        assert_eq!(band.weighted_raw_sum(&[0, 3], &[0.5, -1.0]), 3.5 - 11.0);
    }

    #[test]
    fn gather_scales_the_raw_values() {
        let data = [1000u16, 2000];
        let band = Band {
            scale: 1e-4,
            offset: -0.1,
            ..Band::raw(BandData::U16(&data))
        };
        let mut out = Vec::new();
        band.gather_scaled(&[1, 0], &mut out);
        assert!((out[0] - 0.1).abs() < 1e-12 && out[1].abs() < 1e-12);
    }
}
