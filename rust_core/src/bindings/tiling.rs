//! Tiling windows, tile extraction and blended stitching.

use numpy::ndarray::{Array3, Array4};
use numpy::{
    IntoPyArray, PyArray3, PyArray4, PyReadonlyArray3, PyReadonlyArray4, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::arrays::slice;
use super::interrupt::{input_err, to_py_err};
use crate::tiling::{extract_tiles, stitch, tile_windows};

/// Windows `(row, col, height, width)` covering a grid, row-major.
#[pyfunction]
#[pyo3(signature = (height, width, tile, overlap))]
fn tiling_windows(
    height: usize,
    width: usize,
    tile: usize,
    overlap: usize,
) -> PyResult<Vec<(usize, usize, usize, usize)>> {
    let windows = tile_windows(height, width, tile, overlap).map_err(to_py_err)?;
    Ok(windows
        .iter()
        .map(|w| (w.row, w.col, w.height, w.width))
        .collect())
}

/// `[C, H, W]` float32 image to tiles `[n, C, T, T]`.
#[pyfunction]
#[pyo3(signature = (image, tile, overlap))]
fn tiling_extract<'py>(
    py: Python<'py>,
    image: PyReadonlyArray3<'py, f32>,
    tile: usize,
    overlap: usize,
) -> PyResult<Bound<'py, PyArray4<f32>>> {
    let [c, h, w] = [image.shape()[0], image.shape()[1], image.shape()[2]];
    let data = slice(&image, "image")?;
    let tiles = py
        .detach(|| extract_tiles(data, c, h, w, tile, overlap))
        .map_err(to_py_err)?;
    let n = tiles.len() / (c * tile * tile).max(1);
    Ok(Array4::from_shape_vec((n, c, tile, tile), tiles)
        .map_err(|e| input_err(e.to_string()))?
        .into_pyarray(py))
}

/// Tiles `[n, C, T, T]` float32 back to an image `[C, H, W]`, blended over the overlaps.
#[pyfunction]
#[pyo3(signature = (tiles, height, width, overlap))]
fn tiling_stitch<'py>(
    py: Python<'py>,
    tiles: PyReadonlyArray4<'py, f32>,
    height: usize,
    width: usize,
    overlap: usize,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let shape = tiles.shape().to_vec();
    if shape[2] != shape[3] {
        return Err(input_err(format!(
            "tiles must be square, got {}x{}",
            shape[2], shape[3]
        )));
    }
    let (c, t) = (shape[1], shape[2]);
    let data = tiles
        .as_slice()
        .map_err(|_| input_err("tiles are not C-contiguous"))?;
    let image = py
        .detach(|| stitch(data, c, height, width, t, overlap))
        .map_err(to_py_err)?;
    Ok(Array3::from_shape_vec((c, height, width), image)
        .map_err(|e| input_err(e.to_string()))?
        .into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tiling_windows, m)?)?;
    m.add_function(wrap_pyfunction!(tiling_extract, m)?)?;
    m.add_function(wrap_pyfunction!(tiling_stitch, m)?)?;
    Ok(())
}
