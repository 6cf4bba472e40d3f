//! Kernels of parcel-monitor, in plain Rust.
//!
//! Nothing in the kernel modules knows about Python: `cargo test` and the criterion
//! benches run without an interpreter. The PyO3 layer lives in `bindings` and is only
//! compiled with the `python` feature (maturin turns it on).

pub mod arrow_validity;
pub mod coarse;
pub mod coverage;
pub mod event_json;
pub mod fill_back;
pub mod grid;
pub mod kernel_error;
pub mod label;
pub mod label_build;
pub mod label_cache;
pub mod mask;
pub mod physical;
pub mod pixelset;
pub mod polygons;
pub mod practice_events;
pub mod practice_grid;
pub mod practice_strings;
pub mod raster_value;
pub mod rasterize;
pub mod record_batch;
pub mod sim_render;
pub mod tiling;
pub mod zonal;

#[cfg(feature = "python")]
mod bindings;
