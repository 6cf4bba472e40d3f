//! Kernels of parcel-monitor, in plain Rust.
//!
//! Nothing in the kernel modules knows about Python: `cargo test` and the criterion
//! benches run without an interpreter. The PyO3 layer lives in `bindings` and is only
//! compiled with the `python` feature (maturin turns it on).

pub mod grid;
pub mod label;

pub mod coverage;
pub mod label_build;
pub mod label_cache;
pub mod polygons;
pub mod rasterize;

#[cfg(feature = "python")]
mod bindings;
