//! `LabelRaster` as a Python class, shared by every kernel that iterates over parcels, and the
//! function that builds it from polygons.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::ndarray::{ArrayView1, ArrayView2};
use numpy::npyffi::NPY_ARRAY_WRITEABLE;
use numpy::{
    Element, PyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyIndexError, PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::grid::Grid;
use crate::label::LabelRaster;
use crate::label_build::build_label_raster_cancellable;
use crate::polygons::{LabelError, RaggedPolygons};

/// A parcel label raster owned by Rust; kernels borrow it without copying.
///
/// Array attributes are read-only numpy views of the Rust buffers, kept alive by this object.
#[pyclass(name = "LabelRaster", module = "monitor._core", frozen)]
pub struct PyLabelRaster {
    pub inner: Arc<LabelRaster>,
}

/// File problems become `OSError`, refused input `ValueError` (the facade maps both onto
/// `monitor.errors`).
fn to_py_err(err: LabelError) -> PyErr {
    match err {
        LabelError::Io(_) | LabelError::CorruptCache(_) => PyOSError::new_err(err.to_string()),
        _ => PyValueError::new_err(err.to_string()),
    }
}

/// A read-only numpy view of `data`, whose memory `owner` keeps alive.
fn readonly_view<'py, T: Element, D: numpy::ndarray::Dimension>(
    owner: &Bound<'py, PyLabelRaster>,
    view: &numpy::ndarray::ArrayView<'_, T, D>,
) -> Bound<'py, PyArray<T, D>> {
    // SAFETY: the buffers belong to `owner.inner`, an `Arc` that a frozen object never
    // replaces, and `owner` becomes the array's base, so they outlive the array; clearing
    // WRITEABLE (with no OWNDATA, numpy refuses to set it again) keeps them immutable.
    unsafe {
        let array = PyArray::borrow_from_array(view, owner.clone().into_any());
        (*array.as_array_ptr()).flags &= !NPY_ARRAY_WRITEABLE;
        array
    }
}

fn view1<'py, T: Element>(
    owner: &Bound<'py, PyLabelRaster>,
    data: &[T],
) -> Bound<'py, PyArray1<T>> {
    readonly_view(owner, &ArrayView1::from(data))
}

impl PyLabelRaster {
    fn check_parcel(&self, p: usize) -> PyResult<()> {
        if p >= self.inner.n_parcels {
            return Err(PyIndexError::new_err(format!(
                "parcel {p} out of range (n_parcels = {})",
                self.inner.n_parcels
            )));
        }
        Ok(())
    }
}

#[pymethods]
impl PyLabelRaster {
    /// Wraps an existing label array (0 = no parcel, p + 1 = parcel p), without coverage.
    #[staticmethod]
    fn from_labels(
        py: Python<'_>,
        labels: PyReadonlyArray2<'_, u32>,
        n_parcels: usize,
        transform: [f64; 6],
    ) -> PyResult<Self> {
        let view = labels.as_array();
        let (height, width) = view.dim();
        if let Some(&max) = view.iter().max() {
            if max as usize > n_parcels {
                return Err(PyValueError::new_err(format!(
                    "label {max} exceeds the number of parcels ({n_parcels})"
                )));
            }
        }
        let data: Vec<u32> = view.iter().copied().collect();
        let grid = Grid::new(height, width, transform);
        let inner = py.detach(|| LabelRaster::from_labels(grid, n_parcels, data));
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Reads a raster written by `save`; `OSError` if missing, truncated or corrupt.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| LabelRaster::load(&path)).map_err(to_py_err)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Writes the raster to `path` (not atomic: write to a temporary name, then rename).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.inner.save(&path)).map_err(to_py_err)
    }

    #[getter]
    fn n_parcels(&self) -> usize {
        self.inner.n_parcels
    }

    #[getter]
    fn shape(&self) -> (usize, usize) {
        (self.inner.grid.height, self.inner.grid.width)
    }

    #[getter]
    fn transform(&self) -> [f64; 6] {
        self.inner.grid.transform
    }

    #[getter]
    fn has_coverage(&self) -> bool {
        self.inner.has_coverage()
    }

    /// `[height, width]` uint32 labels: 0 = no parcel, p + 1 = parcel p (read-only view).
    #[getter]
    fn labels<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArray2<u32>>> {
        let inner = &slf.get().inner;
        let shape = (inner.grid.height, inner.grid.width);
        let view = ArrayView2::from_shape(shape, &inner.labels)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(readonly_view(slf, &view))
    }

    /// CSR offsets (n_parcels + 1) into `pixels` (read-only view).
    #[getter]
    fn offsets<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyArray1<u64>> {
        view1(slf, &slf.get().inner.offsets)
    }

    /// Row-major pixel indices of every parcel's pixel-centre members (read-only view).
    #[getter]
    fn pixels<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyArray1<u32>> {
        view1(slf, &slf.get().inner.pixels)
    }

    /// CSR offsets (n_parcels + 1) into `cov_pixels`/`cov_fraction` (read-only view).
    ///
    /// The coverage lists hold each parcel's boundary: the cells whose covered fraction is not
    /// their pixel-centre membership (an unlisted pixel of the parcel covers 1, any other cell
    /// 0). `coverage(p)` expands them to every covered cell.
    #[getter]
    fn cov_offsets<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyArray1<u64>> {
        view1(slf, &slf.get().inner.cov_offsets)
    }

    /// Row-major indices of each parcel's listed (boundary) cells (read-only view).
    #[getter]
    fn cov_pixels<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyArray1<u32>> {
        view1(slf, &slf.get().inner.cov_pixels)
    }

    /// Covered fraction (0, 1] of each cell in `cov_pixels` (read-only view).
    #[getter]
    fn cov_fraction<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyArray1<f64>> {
        view1(slf, &slf.get().inner.cov_fraction)
    }

    /// Number of pixel-centre pixels of each parcel (a new array).
    #[getter]
    fn pixel_counts<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        let counts: Vec<u64> = self.inner.offsets.windows(2).map(|w| w[1] - w[0]).collect();
        PyArray1::from_vec(py, counts)
    }

    /// Pixel-centre pixels of parcel `p` (row-major indices, ascending; read-only view).
    fn parcel_pixels<'py>(slf: &Bound<'py, Self>, p: usize) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let this = slf.get();
        this.check_parcel(p)?;
        Ok(view1(slf, this.inner.parcel_pixels(p)))
    }

    /// Every cell parcel `p` covers, row-major, and its covered fraction (new arrays; empty
    /// without coverage).
    #[allow(clippy::type_complexity)]
    fn coverage<'py>(
        &self,
        py: Python<'py>,
        p: usize,
    ) -> PyResult<(Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<f64>>)> {
        self.check_parcel(p)?;
        let (cells, fractions) = self.inner.full_coverage(p);
        Ok((
            PyArray1::from_vec(py, cells),
            PyArray1::from_vec(py, fractions),
        ))
    }
}

/// Builds the label raster of polygons given as `shapely.to_ragged_array` arrays of a
/// MultiPolygon array (one geometry per parcel, in the grid's CRS). Runs without the GIL and
/// stops with `KeyboardInterrupt` on Ctrl-C.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn build_label_raster(
    py: Python<'_>,
    coords: PyReadonlyArray2<'_, f64>,
    ring_offsets: PyReadonlyArray1<'_, i64>,
    polygon_offsets: PyReadonlyArray1<'_, i64>,
    geometry_offsets: PyReadonlyArray1<'_, i64>,
    height: usize,
    width: usize,
    transform: [f64; 6],
    coverage: bool,
) -> PyResult<PyLabelRaster> {
    if coords.shape()[1] != 2 {
        return Err(PyValueError::new_err(format!(
            "coords must have shape (n, 2), got {:?}",
            coords.shape()
        )));
    }
    let contiguous = |name: &str| PyValueError::new_err(format!("{name} must be C-contiguous"));
    let polygons = RaggedPolygons {
        coords: coords.as_slice().map_err(|_| contiguous("coords"))?,
        ring_offsets: ring_offsets
            .as_slice()
            .map_err(|_| contiguous("ring_offsets"))?,
        polygon_offsets: polygon_offsets
            .as_slice()
            .map_err(|_| contiguous("polygon_offsets"))?,
        geometry_offsets: geometry_offsets
            .as_slice()
            .map_err(|_| contiguous("geometry_offsets"))?,
    };
    let grid = Grid::new(height, width, transform);
    let mut interrupt: Option<PyErr> = None;
    let built = py.detach(|| {
        let mut cancelled = || match Python::attach(|py| py.check_signals()) {
            Ok(()) => false,
            Err(e) => {
                interrupt = Some(e);
                true
            }
        };
        build_label_raster_cancellable(grid, &polygons, coverage, &mut cancelled)
    });
    match (built, interrupt) {
        (Ok(inner), _) => Ok(PyLabelRaster {
            inner: Arc::new(inner),
        }),
        (Err(LabelError::Cancelled), Some(e)) => Err(e),
        (Err(e), _) => Err(to_py_err(e)),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLabelRaster>()?;
    m.add_function(wrap_pyfunction!(build_label_raster, m)?)
}
