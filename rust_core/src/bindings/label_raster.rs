//! `LabelRaster` as a Python class, shared by every kernel that iterates over parcels.

use std::sync::Arc;

use numpy::PyReadonlyArray2;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::grid::Grid;
use crate::label::LabelRaster;

/// A parcel label raster owned by Rust; kernels borrow it without copying.
#[pyclass(name = "LabelRaster", module = "monitor._core", frozen)]
pub struct PyLabelRaster {
    pub inner: Arc<LabelRaster>,
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
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLabelRaster>()
}
