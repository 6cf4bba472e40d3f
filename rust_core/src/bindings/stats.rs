//! Zonal statistics and pixel sets over a `LabelRaster`, bands passed as a list of 2-D arrays
//! (each borrowed without copying, dtypes may differ).

use numpy::ndarray::{Array2, Array3};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArray3, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use super::arrays::Raster2;
use super::interrupt::{input_err, run_interruptible};
use super::label_raster::PyLabelRaster;
use crate::label::LabelRaster;
use crate::pixelset::pixel_sets;
use crate::raster_value::Band;
use crate::zonal::{zonal_statistics, ZonalOptions};

/// The band arguments both kernels take, borrowed without copying and checked against the
/// label raster's grid.
struct BandInputs<'py> {
    rasters: Vec<Raster2<'py>>,
    valid: Option<PyReadonlyArray2<'py, bool>>,
    scales: Vec<f64>,
    offsets: Vec<f64>,
    nodata: Vec<Option<f64>>,
}

impl<'py> BandInputs<'py> {
    fn borrow(
        labels: &LabelRaster,
        bands: &[Bound<'py, PyAny>],
        valid: Option<PyReadonlyArray2<'py, bool>>,
        scales: Vec<f64>,
        offsets: Vec<f64>,
        nodata: Vec<Option<f64>>,
    ) -> PyResult<Self> {
        let n = bands.len();
        if scales.len() != n || offsets.len() != n || nodata.len() != n {
            return Err(input_err(format!(
                "{n} bands but {} scales, {} offsets, {} nodata values",
                scales.len(),
                offsets.len(),
                nodata.len()
            )));
        }
        let grid = (labels.grid.height, labels.grid.width);
        let rasters = bands
            .iter()
            .enumerate()
            .map(|(b, obj)| {
                let raster = Raster2::borrow(obj, &format!("band {b}"))?;
                if raster.shape() != grid {
                    return Err(input_err(format!(
                        "band {b} has shape {:?}, the label raster {grid:?}",
                        raster.shape()
                    )));
                }
                Ok(raster)
            })
            .collect::<PyResult<Vec<_>>>()?;
        if let Some(mask) = &valid {
            if mask.shape() != [grid.0, grid.1] {
                return Err(input_err(format!(
                    "valid mask has shape {:?}, the label raster {grid:?}",
                    mask.shape()
                )));
            }
            if !mask.is_c_contiguous() {
                return Err(input_err("valid mask is not C-contiguous"));
            }
        }
        Ok(Self {
            rasters,
            valid,
            scales,
            offsets,
            nodata,
        })
    }

    fn bands(&self) -> Vec<Band<'_>> {
        self.rasters
            .iter()
            .enumerate()
            .map(|(b, r)| Band {
                data: r.data(),
                scale: self.scales[b],
                offset: self.offsets[b],
                nodata: self.nodata[b],
            })
            .collect()
    }

    fn mask(&self) -> Option<&[bool]> {
        let contiguous = "contiguity checked in BandInputs::borrow";
        self.valid.as_ref().map(|m| m.as_slice().expect(contiguous))
    }
}

/// Zonal statistics: `(pixel_count, valid_count, values[n_parcels, n_columns])`.
#[pyfunction]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
#[pyo3(signature = (labels, bands, valid, scales, offsets, nodata, ndvi, weighted_mean))]
fn zonal_stats<'py>(
    py: Python<'py>,
    labels: PyRef<'py, PyLabelRaster>,
    bands: Vec<Bound<'py, PyAny>>,
    valid: Option<PyReadonlyArray2<'py, bool>>,
    scales: Vec<f64>,
    offsets: Vec<f64>,
    nodata: Vec<Option<f64>>,
    ndvi: Option<(usize, usize)>,
    weighted_mean: bool,
) -> PyResult<(
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray2<f64>>,
)> {
    let lr = labels.inner.clone();
    let inputs = BandInputs::borrow(&lr, &bands, valid, scales, offsets, nodata)?;
    let (band_list, mask) = (inputs.bands(), inputs.mask());
    let options = ZonalOptions {
        ndvi,
        weighted_mean,
    };
    let out = run_interruptible(py, |cancel| {
        zonal_statistics(&lr, &band_list, mask, &options, cancel)
    })?;
    let values = Array2::from_shape_vec((lr.n_parcels, out.n_columns), out.values)
        .map_err(|e| input_err(e.to_string()))?;
    Ok((
        PyArray1::from_vec(py, out.pixel_count),
        PyArray1::from_vec(py, out.valid_count),
        values.into_pyarray(py),
    ))
}

/// Pixel sets: `(values[n_parcels, n_samples, n_bands] f32, mask[n_parcels, n_samples])`.
#[pyfunction]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
#[pyo3(signature = (labels, bands, valid, scales, offsets, nodata, n_samples, seed))]
fn pixel_set<'py>(
    py: Python<'py>,
    labels: PyRef<'py, PyLabelRaster>,
    bands: Vec<Bound<'py, PyAny>>,
    valid: Option<PyReadonlyArray2<'py, bool>>,
    scales: Vec<f64>,
    offsets: Vec<f64>,
    nodata: Vec<Option<f64>>,
    n_samples: usize,
    seed: u64,
) -> PyResult<(Bound<'py, PyArray3<f32>>, Bound<'py, PyArray2<bool>>)> {
    let lr = labels.inner.clone();
    let inputs = BandInputs::borrow(&lr, &bands, valid, scales, offsets, nodata)?;
    let (band_list, mask) = (inputs.bands(), inputs.mask());
    let out = run_interruptible(py, |cancel| {
        pixel_sets(&lr, &band_list, mask, n_samples, seed, cancel)
    })?;
    let (n, b) = (lr.n_parcels, band_list.len());
    let values = Array3::from_shape_vec((n, n_samples, b), out.values)
        .map_err(|e| input_err(e.to_string()))?;
    let mask =
        Array2::from_shape_vec((n, n_samples), out.mask).map_err(|e| input_err(e.to_string()))?;
    Ok((values.into_pyarray(py), mask.into_pyarray(py)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(zonal_stats, m)?)?;
    m.add_function(wrap_pyfunction!(pixel_set, m)?)?;
    Ok(())
}
