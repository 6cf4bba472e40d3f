//! Block reductions and detail transfer for cloud removal on a coarser grid.

use numpy::ndarray::{Array2, Array3};
use numpy::{
    IntoPyArray, PyArray2, PyArray3, PyReadonlyArray2, PyReadonlyArray3, PyReadwriteArray3,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::arrays::{slice, slice_mut};
use super::interrupt::{input_err, to_py_err};
use crate::coarse::{
    block_any, block_mean, coarse_shape, detail_transfer, Average, BlockPrediction, PixelPlanes,
};

/// `[C, H, W]` float32 to the mean of each `factor`² block's finite values (`decibel`: in
/// linear power, returned in dB), `[C, ceil(H/f), ceil(W/f)]`.
#[pyfunction]
#[pyo3(signature = (image, factor, decibel))]
fn coarse_block_mean<'py>(
    py: Python<'py>,
    image: PyReadonlyArray3<'py, f32>,
    factor: usize,
    decibel: bool,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let [c, h, w] = [image.shape()[0], image.shape()[1], image.shape()[2]];
    let data = slice(&image, "image")?;
    let average = if decibel {
        Average::Decibel
    } else {
        Average::Linear
    };
    let out = py
        .detach(|| block_mean(data, c, h, w, factor, average))
        .map_err(to_py_err)?;
    let (ch, cw) = coarse_shape(h, w, factor.max(1));
    Ok(Array3::from_shape_vec((c, ch, cw), out)
        .map_err(|e| input_err(e.to_string()))?
        .into_pyarray(py))
}

/// `[H, W]` bool to `[ceil(H/f), ceil(W/f)]`: true where any pixel of the block is.
#[pyfunction]
#[pyo3(signature = (mask, factor))]
fn coarse_block_any<'py>(
    py: Python<'py>,
    mask: PyReadonlyArray2<'py, bool>,
    factor: usize,
) -> PyResult<Bound<'py, PyArray2<bool>>> {
    let [h, w] = [mask.shape()[0], mask.shape()[1]];
    let data = slice(&mask, "mask")?;
    let out = py
        .detach(|| block_any(data, h, w, factor))
        .map_err(to_py_err)?;
    let (ch, cw) = coarse_shape(h, w, factor.max(1));
    Ok(Array2::from_shape_vec((ch, cw), out)
        .map_err(|e| input_err(e.to_string()))?
        .into_pyarray(py))
}

/// Writes `t0 + (block predicted - block t0)` and the block's sigma into `reflectance` and
/// `uncertainty` (`[C, H, W]`, in place) where `pixels [H, W]` is true; the block arrays are
/// `[C, ceil(H/f), ceil(W/f)]`.
#[pyfunction]
#[pyo3(signature = (block_t0, predicted, sigma, t0, pixels, factor, reflectance, uncertainty))]
#[allow(clippy::too_many_arguments)]
fn coarse_detail_transfer<'py>(
    py: Python<'py>,
    block_t0: PyReadonlyArray3<'py, f32>,
    predicted: PyReadonlyArray3<'py, f32>,
    sigma: PyReadonlyArray3<'py, f32>,
    t0: PyReadonlyArray3<'py, f32>,
    pixels: PyReadonlyArray2<'py, bool>,
    factor: usize,
    mut reflectance: PyReadwriteArray3<'py, f32>,
    mut uncertainty: PyReadwriteArray3<'py, f32>,
) -> PyResult<()> {
    let [c, h, w] = [t0.shape()[0], t0.shape()[1], t0.shape()[2]];
    let [bh, bw] = [block_t0.shape()[1], block_t0.shape()[2]];
    let blocks = BlockPrediction {
        t0: slice(&block_t0, "block_t0")?,
        predicted: slice(&predicted, "predicted")?,
        sigma: slice(&sigma, "sigma")?,
        height: bh,
        width: bw,
        factor,
    };
    let planes = PixelPlanes {
        t0: slice(&t0, "t0")?,
        reflectance: slice_mut(&mut reflectance, "reflectance")?,
        uncertainty: slice_mut(&mut uncertainty, "uncertainty")?,
        channels: c,
        height: h,
        width: w,
    };
    let mask = slice(&pixels, "pixels")?;
    py.detach(|| detail_transfer(&blocks, planes, mask))
        .map_err(to_py_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(coarse_block_mean, m)?)?;
    m.add_function(wrap_pyfunction!(coarse_block_any, m)?)?;
    m.add_function(wrap_pyfunction!(coarse_detail_transfer, m)?)?;
    Ok(())
}
