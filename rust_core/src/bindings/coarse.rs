//! Cloud removal's pixel work: block reductions and detail transfer on a coarser grid, and the
//! write-back of reconstructed pixels with per-label sums.

use numpy::ndarray::{Array2, Array3};
use numpy::{
    IntoPyArray, PyArray2, PyArray3, PyReadonlyArray2, PyReadonlyArray3, PyReadwriteArray1,
    PyReadwriteArray2, PyReadwriteArray3, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::arrays::Raster2;
use super::arrays::{slice, slice_mut};
use super::interrupt::{input_err, to_py_err};
use crate::coarse::{
    block_any, block_mean, coarse_shape, detail_transfer, Average, BlockPrediction, PixelPlanes,
};
use crate::fill_back::{fill_block, Block, Filled};
use crate::physical::to_physical;
use crate::raster_value::Band;

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

/// Writes the finite target pixels of a block's `reflectance`/`sigma [C, h, w]` into
/// `bands [C, H, W]` at `(row, col)`, sets `done [H, W]` there and adds them to the per-label
/// `count [n]`, `sigma_sum [C, n]` and `confidence [n]` (`exp(-mean sigma / sigma_ref)`).
#[pyfunction]
#[pyo3(signature = (
    bands, done, count, sigma_sum, confidence, reflectance, sigma, target, labels, row, col,
    sigma_ref
))]
#[allow(clippy::too_many_arguments)]
fn fill_back_block<'py>(
    py: Python<'py>,
    mut bands: PyReadwriteArray3<'py, f32>,
    mut done: PyReadwriteArray2<'py, bool>,
    mut count: PyReadwriteArray1<'py, f64>,
    mut sigma_sum: PyReadwriteArray2<'py, f64>,
    mut confidence: PyReadwriteArray1<'py, f64>,
    reflectance: PyReadonlyArray3<'py, f32>,
    sigma: PyReadonlyArray3<'py, f32>,
    target: PyReadonlyArray2<'py, bool>,
    labels: PyReadonlyArray2<'py, u32>,
    row: usize,
    col: usize,
    sigma_ref: f64,
) -> PyResult<()> {
    let [c, height, width] = [bands.shape()[0], bands.shape()[1], bands.shape()[2]];
    let [h, w] = [target.shape()[0], target.shape()[1]];
    let filled = Filled {
        bands: slice_mut(&mut bands, "bands")?,
        done: slice_mut(&mut done, "done")?,
        channels: c,
        height,
        width,
        count: slice_mut(&mut count, "count")?,
        sigma_sum: slice_mut(&mut sigma_sum, "sigma_sum")?,
        confidence: slice_mut(&mut confidence, "confidence")?,
    };
    let block = Block {
        reflectance: slice(&reflectance, "reflectance")?,
        sigma: slice(&sigma, "sigma")?,
        target: slice(&target, "target")?,
        labels: slice(&labels, "labels")?,
        row,
        col,
        height: h,
        width: w,
    };
    py.detach(|| fill_block(filled, &block, sigma_ref))
        .map_err(to_py_err)
}

/// Physical values (`raw * scale + offset`, float32) of a 2-D raster of any band dtype into
/// `out` (same shape, in place): NaN where nodata, NaN or (given `valid`) not valid.
#[pyfunction]
#[pyo3(signature = (raw, scale, offset, nodata, out, valid=None))]
fn physical_values<'py>(
    py: Python<'py>,
    raw: Bound<'py, PyAny>,
    scale: f64,
    offset: f64,
    nodata: Option<f64>,
    mut out: PyReadwriteArray2<'py, f32>,
    valid: Option<PyReadonlyArray2<'py, bool>>,
) -> PyResult<()> {
    let raster = Raster2::borrow(&raw, "raw band")?;
    if raster.shape() != (out.shape()[0], out.shape()[1]) {
        return Err(input_err(format!(
            "raw band is {:?}, out {:?}",
            raster.shape(),
            out.shape()
        )));
    }
    let band = Band {
        data: raster.data(),
        scale,
        offset,
        nodata,
    };
    let mask = valid.as_ref().map(|v| slice(v, "valid")).transpose()?;
    let dst = slice_mut(&mut out, "out")?;
    py.detach(|| to_physical(&band, mask, dst))
        .map_err(to_py_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(coarse_block_mean, m)?)?;
    m.add_function(wrap_pyfunction!(coarse_block_any, m)?)?;
    m.add_function(wrap_pyfunction!(coarse_detail_transfer, m)?)?;
    m.add_function(wrap_pyfunction!(fill_back_block, m)?)?;
    m.add_function(wrap_pyfunction!(physical_values, m)?)?;
    Ok(())
}
