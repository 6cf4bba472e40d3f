//! Thin PyO3 layer over the kernels: converts arguments, releases the GIL for the whole
//! kernel (`py.detach`), converts results back. One submodule per kernel family; each has a
//! `register` function adding its classes and functions to `monitor._core`.

use pyo3::prelude::*;

mod arrays;
mod coarse;
mod events;
mod interrupt;
mod label_raster;
mod mask;
mod practices;
mod record_batch;
mod sim_render;
mod stats;
mod tiling;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    coarse::register(m)?;
    events::register(m)?;
    label_raster::register(m)?;
    mask::register(m)?;
    practices::register(m)?;
    record_batch::register(m)?;
    sim_render::register(m)?;
    stats::register(m)?;
    tiling::register(m)?;
    Ok(())
}
