//! Validity masks from an SCL or a cloud-probability raster, and nearest-neighbour upsampling.

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2};
use pyo3::prelude::*;

use super::arrays::Raster2;
use super::interrupt::{input_err, run_interruptible, to_py_err};
use crate::kernel_error::input_error;
use crate::mask::{mask_from_probability, mask_from_scl, upsample_nearest};
use crate::raster_value::BandData;

fn to_array<T: numpy::Element>(
    py: Python<'_>,
    shape: (usize, usize),
    data: Vec<T>,
) -> PyResult<Bound<'_, PyArray2<T>>> {
    Ok(Array2::from_shape_vec(shape, data)
        .map_err(|e| input_err(e.to_string()))?
        .into_pyarray(py))
}

/// Valid mask (`True` = valid) from an SCL class raster (uint8 or uint16).
#[pyfunction]
#[pyo3(signature = (scl, invalid_classes, dilation))]
fn validity_mask_scl<'py>(
    py: Python<'py>,
    scl: Bound<'py, PyAny>,
    invalid_classes: Vec<u16>,
    dilation: usize,
) -> PyResult<Bound<'py, PyArray2<bool>>> {
    let raster = Raster2::borrow(&scl, "SCL raster")?;
    let (h, w) = raster.shape();
    let data = raster.data();
    let valid = run_interruptible(py, |_| match data {
        BandData::U8(d) => mask_from_scl(d, h, w, &invalid_classes, dilation),
        BandData::U16(d) => mask_from_scl(d, h, w, &invalid_classes, dilation),
        _ => Err(input_error("SCL raster must be uint8 or uint16")),
    })?;
    to_array(py, (h, w), valid)
}

/// Valid mask (`True` = valid) from a cloud-probability raster.
#[pyfunction]
#[pyo3(signature = (prob, threshold, dilation, nodata))]
fn validity_mask_probability<'py>(
    py: Python<'py>,
    prob: Bound<'py, PyAny>,
    threshold: f64,
    dilation: usize,
    nodata: Option<f64>,
) -> PyResult<Bound<'py, PyArray2<bool>>> {
    let raster = Raster2::borrow(&prob, "probability raster")?;
    let (h, w) = raster.shape();
    let data = raster.data();
    let valid = run_interruptible(py, |_| match data {
        BandData::U8(d) => mask_from_probability(d, h, w, threshold, nodata, dilation),
        BandData::U16(d) => mask_from_probability(d, h, w, threshold, nodata, dilation),
        BandData::I16(d) => mask_from_probability(d, h, w, threshold, nodata, dilation),
        BandData::F32(d) => mask_from_probability(d, h, w, threshold, nodata, dilation),
        BandData::F64(d) => mask_from_probability(d, h, w, threshold, nodata, dilation),
    })?;
    to_array(py, (h, w), valid)
}

/// Nearest-neighbour upsampling of a uint8/uint16 class raster by an integer factor.
#[pyfunction]
#[pyo3(signature = (classes, factor))]
fn upsample_classes<'py>(
    py: Python<'py>,
    classes: Bound<'py, PyAny>,
    factor: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let raster = Raster2::borrow(&classes, "class raster")?;
    let (h, w) = raster.shape();
    let shape = (h * factor, w * factor);
    match raster.data() {
        BandData::U8(d) => {
            let up = py
                .detach(|| upsample_nearest(d, h, w, factor))
                .map_err(to_py_err)?;
            Ok(to_array(py, shape, up)?.into_any())
        }
        BandData::U16(d) => {
            let up = py
                .detach(|| upsample_nearest(d, h, w, factor))
                .map_err(to_py_err)?;
            Ok(to_array(py, shape, up)?.into_any())
        }
        _ => Err(input_err("class raster must be uint8 or uint16")),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(validity_mask_scl, m)?)?;
    m.add_function(wrap_pyfunction!(validity_mask_probability, m)?)?;
    m.add_function(wrap_pyfunction!(upsample_classes, m)?)?;
    Ok(())
}
