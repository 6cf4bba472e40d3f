//! Raw band values to physical units in one pass: `raw * scale + offset` as float32, NaN where
//! the pixel is nodata (its raw value NaN or equal to `nodata`) or masked out.
//!
//! Arithmetic and the nodata test follow numpy's on the same arrays (`raw.astype(float32) *
//! float32(scale) + float32(offset)`; a float32 raster compares with nodata in float32, the
//! others exactly), so both give the same values.

use rayon::prelude::*;

use crate::kernel_error::{input_error, KernelError};
use crate::raster_value::{Band, BandData, RasterValue};

const CHUNK: usize = 1 << 16;

/// Writes the physical values of `band` into `out` (same length); where `valid` is given and
/// false, NaN.
pub fn to_physical(
    band: &Band<'_>,
    valid: Option<&[bool]>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    if band.len() != out.len() || valid.is_some_and(|v| v.len() != out.len()) {
        return Err(input_error(format!(
            "band, mask and output must have the same number of pixels ({}, {:?}, {})",
            band.len(),
            valid.map(<[bool]>::len),
            out.len()
        )));
    }
    let (scale, offset) = (band.scale as f32, band.offset as f32);
    let nodata = band.nodata.filter(|v| !v.is_nan());
    match band.data {
        BandData::U8(d) => convert(d, |v| nodata == Some(v.to_f64()), scale, offset, valid, out),
        BandData::U16(d) => convert(d, |v| nodata == Some(v.to_f64()), scale, offset, valid, out),
        BandData::I16(d) => convert(d, |v| nodata == Some(v.to_f64()), scale, offset, valid, out),
        BandData::F32(d) => {
            let nodata = nodata.map(|v| v as f32);
            convert(d, |v| nodata == Some(v), scale, offset, valid, out)
        }
        BandData::F64(d) => convert(d, |v| nodata == Some(v), scale, offset, valid, out),
    }
    Ok(())
}

fn convert<T: RasterValue>(
    data: &[T],
    is_nodata: impl Fn(T) -> bool + Sync,
    scale: f32,
    offset: f32,
    valid: Option<&[bool]>,
    out: &mut [f32],
) {
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(k, dst)| {
        let start = k * CHUNK;
        let src = &data[start..start + dst.len()];
        for (i, (o, &raw)) in dst.iter_mut().zip(src).enumerate() {
            let masked = valid.is_some_and(|v| !v[start + i]);
            let value = raw.to_f64() as f32 * scale + offset;
            *o = if masked || is_nodata(raw) {
                f32::NAN
            } else {
                value
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_blanks_nodata_nan_and_masked_pixels() {
        let raw = [0u16, 1000, 2000, 3000];
        let band = Band {
            data: BandData::U16(&raw),
            scale: 1e-4,
            offset: -0.1,
            nodata: Some(0.0),
        };
        let mut out = [0f32; 4];
        to_physical(&band, Some(&[true, true, true, false]), &mut out).unwrap();
        assert!(out[0].is_nan() && out[3].is_nan());
        assert!(
            (out[1] - 0.0).abs() < 1e-7 && (out[2] - 0.1).abs() < 1e-7,
            "{out:?}"
        );

        let raw = [f32::NAN, -12.5];
        let band = Band::raw(BandData::F32(&raw));
        let mut out = [0f32; 2];
        to_physical(&band, None, &mut out).unwrap();
        assert!(out[0].is_nan());
        assert_eq!(out[1], -12.5);
    }

    #[test]
    fn lengths_must_agree() {
        let band = Band::raw(BandData::U8(&[1, 2]));
        assert!(to_physical(&band, None, &mut [0f32; 3]).is_err());
    }
}
