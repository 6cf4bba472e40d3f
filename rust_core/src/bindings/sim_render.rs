//! The simulator's fused band renderers: numpy inputs borrowed without copying, the output
//! array written in place (the caller recycles its buffers), the GIL released meanwhile.

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use super::arrays::{slice, slice_mut};
use super::interrupt::{input_err, to_py_err};
use crate::sim_render::{
    burn_edges, render_optical, render_radar, render_texture, snow_fraction, upsample, Coarse,
    Edges, Output, RadarInputs, SkyBand, SurfaceInputs, TextureInputs,
};

fn coarse<'a>(array: &'a PyReadonlyArray2<'_, f32>, what: &str) -> PyResult<Coarse<'a>> {
    let shape = array.shape();
    Ok(Coarse {
        data: slice(array, what)?,
        height: shape[0],
        width: shape[1],
    })
}

/// Renders one simulated Sentinel-2 band into `out` (float32 reflectance, or uint16 x 10⁴
/// with `surface_out` the clear-sky surface and `saturated` pixels set to 65535).
#[pyfunction]
#[pyo3(signature = (
    labels, mean, slope, texture, out, *, noise_seed=None, snow=None, snow_value=0.0,
    through=None, opacity=None, cloud=0.0, cirrus=None, cirrus_factor=0.0, patches=None,
    haze_factor=0.0, haze=0.0, surface_out=None, saturated=None
))]
#[allow(clippy::too_many_arguments)]
fn sim_render_optical<'py>(
    py: Python<'py>,
    labels: PyReadonlyArray2<'py, i32>,
    mean: PyReadonlyArray1<'py, f32>,
    slope: PyReadonlyArray1<'py, f32>,
    texture: PyReadonlyArray2<'py, f32>,
    out: Bound<'py, PyAny>,
    noise_seed: Option<u64>,
    snow: Option<PyReadonlyArray2<'py, f32>>,
    snow_value: f32,
    through: Option<PyReadonlyArray2<'py, f32>>,
    opacity: Option<PyReadonlyArray2<'py, f32>>,
    cloud: f32,
    cirrus: Option<PyReadonlyArray2<'py, f32>>,
    cirrus_factor: f32,
    patches: Option<PyReadonlyArray2<'py, f32>>,
    haze_factor: f32,
    haze: f32,
    surface_out: Option<PyReadwriteArray2<'py, u16>>,
    saturated: Option<PyReadonlyArray2<'py, bool>>,
) -> PyResult<()> {
    let shape = labels.shape();
    let (height, width) = (shape[0], shape[1]);
    let inputs = SurfaceInputs {
        labels: slice(&labels, "labels")?,
        height,
        width,
        mean: slice(&mean, "mean")?,
        slope: slice(&slope, "slope")?,
        texture: slice(&texture, "texture")?,
        noise_seed,
        snow: match &snow {
            Some(s) => Some((slice(s, "snow")?, snow_value)),
            None => None,
        },
    };
    let sky = SkyBand {
        through: through.as_ref().map(|a| coarse(a, "through")).transpose()?,
        opacity: match &opacity {
            Some(a) => Some((coarse(a, "opacity")?, cloud)),
            None => None,
        },
        cirrus: match &cirrus {
            Some(a) => Some((coarse(a, "cirrus")?, cirrus_factor)),
            None => None,
        },
        patches: match &patches {
            Some(a) => Some((coarse(a, "patches")?, haze_factor)),
            None => None,
        },
        haze,
    };
    if let Ok(mut reflectance) = out.extract::<PyReadwriteArray2<'py, f32>>() {
        let out = slice_mut(&mut reflectance, "out")?;
        return py
            .detach(|| render_optical(&inputs, &sky, Output::Reflectance(out)))
            .map_err(to_py_err);
    }
    let mut digital = out
        .extract::<PyReadwriteArray2<'py, u16>>()
        .map_err(|_| input_err("out must be a writable 2-D float32 or uint16 array"))?;
    let observed = slice_mut(&mut digital, "out")?;
    let mut surface_out = surface_out;
    let surface = match surface_out.as_mut() {
        Some(s) => Some(slice_mut(s, "surface_out")?),
        None => None,
    };
    let saturated = match &saturated {
        Some(mask) => Some((slice(mask, "saturated")?, mask.shape()[0], mask.shape()[1])),
        None => None,
    };
    let output = Output::Digital {
        observed,
        surface,
        saturated,
    };
    py.detach(|| render_optical(&inputs, &sky, output))
        .map_err(to_py_err)
}

/// Renders one simulated Sentinel-1 polarisation (γ⁰ dB, float32) into `out`.
#[pyfunction]
#[pyo3(signature = (
    labels, db, texture, texture_db, ramp, speckle_table, seed, out, *, extra_db=None,
    quantum=64.0
))]
#[allow(clippy::too_many_arguments)]
fn sim_render_radar<'py>(
    py: Python<'py>,
    labels: PyReadonlyArray2<'py, i32>,
    db: PyReadonlyArray1<'py, f32>,
    texture: PyReadonlyArray2<'py, f32>,
    texture_db: f32,
    ramp: PyReadonlyArray1<'py, f32>,
    speckle_table: PyReadonlyArray1<'py, f32>,
    seed: u64,
    mut out: PyReadwriteArray2<'py, f32>,
    extra_db: Option<PyReadonlyArray2<'py, f32>>,
    quantum: f32,
) -> PyResult<()> {
    let shape = labels.shape();
    let inputs = RadarInputs {
        labels: slice(&labels, "labels")?,
        height: shape[0],
        width: shape[1],
        db: slice(&db, "db")?,
        texture: slice(&texture, "texture")?,
        texture_db,
        ramp: slice(&ramp, "ramp")?,
        speckle_table: slice(&speckle_table, "speckle_table")?,
        seed,
        extra_db: extra_db
            .as_ref()
            .map(|a| slice(a, "extra_db"))
            .transpose()?,
        quantum,
    };
    let out = slice_mut(&mut out, "out")?;
    py.detach(|| render_radar(&inputs, out)).map_err(to_py_err)
}

/// Bilinear upsampling of `coarse` into `out`: output pixel (r, c) samples the coarse grid at
/// ((r + 0.5) / factor - 0.5 + offset) along each axis, clamped at the edges.
#[pyfunction]
#[pyo3(signature = (coarse, factor, out, *, offset=0.0))]
fn sim_upsample<'py>(
    py: Python<'py>,
    coarse: PyReadonlyArray2<'py, f32>,
    factor: f64,
    mut out: PyReadwriteArray2<'py, f32>,
    offset: f64,
) -> PyResult<()> {
    let field = self::coarse(&coarse, "coarse")?;
    let shape = out.shape();
    let (height, width) = (shape[0], shape[1]);
    let out = slice_mut(&mut out, "out")?;
    py.detach(|| upsample(field, factor, offset, out, height, width))
        .map_err(to_py_err)
}

/// Visible snow share per pixel into `out`: `field` upsampled by `factor`, clipped to [0, 1],
/// times `visible[labels]`.
#[pyfunction]
fn sim_snow_fraction<'py>(
    py: Python<'py>,
    field: PyReadonlyArray2<'py, f32>,
    factor: f64,
    labels: PyReadonlyArray2<'py, i32>,
    visible: PyReadonlyArray1<'py, f32>,
    mut out: PyReadwriteArray2<'py, f32>,
) -> PyResult<()> {
    if labels.shape() != out.shape() {
        return Err(input_err("labels and out differ in shape"));
    }
    let width = out.shape()[1];
    let field = coarse(&field, "field")?;
    let labels = slice(&labels, "labels")?;
    let visible = slice(&visible, "visible")?;
    let out = slice_mut(&mut out, "out")?;
    py.detach(|| snow_fraction(field, factor, labels, visible, out, width))
        .map_err(to_py_err)
}

/// Scanline fill of non-overlapping convex polygons given as edges in pixel units (row axis
/// south), `values` signed (+ west side, - east side), into the int32 `out`.
#[pyfunction]
fn sim_burn_edges<'py>(
    py: Python<'py>,
    ax: PyReadonlyArray1<'py, f64>,
    ay: PyReadonlyArray1<'py, f64>,
    bx: PyReadonlyArray1<'py, f64>,
    by: PyReadonlyArray1<'py, f64>,
    values: PyReadonlyArray1<'py, i32>,
    mut out: PyReadwriteArray2<'py, i32>,
) -> PyResult<()> {
    let edges = Edges {
        ax: slice(&ax, "ax")?,
        ay: slice(&ay, "ay")?,
        bx: slice(&bx, "bx")?,
        by: slice(&by, "by")?,
        value: slice(&values, "values")?,
    };
    let shape = out.shape();
    let (height, width) = (shape[0], shape[1]);
    let out = slice_mut(&mut out, "out")?;
    py.detach(|| burn_edges(&edges, out, height, width))
        .map_err(to_py_err)
}

/// Within-field texture into `out` (10 m): `patches` (20 m, 2x interpolated) x
/// `patchy[labels]` + a grain drawn from `grain_table` per pixel (from `seed`) x `grainy[labels]`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn sim_texture<'py>(
    py: Python<'py>,
    labels: PyReadonlyArray2<'py, i32>,
    patches: PyReadonlyArray2<'py, f32>,
    patchy: PyReadonlyArray1<'py, f32>,
    grainy: PyReadonlyArray1<'py, f32>,
    grain_table: PyReadonlyArray1<'py, f32>,
    seed: u64,
    mut out: PyReadwriteArray2<'py, f32>,
) -> PyResult<()> {
    if labels.shape() != out.shape() {
        return Err(input_err("labels and out differ in shape"));
    }
    let shape = labels.shape();
    let inputs = TextureInputs {
        labels: slice(&labels, "labels")?,
        height: shape[0],
        width: shape[1],
        patches: coarse(&patches, "patches")?,
        patchy: slice(&patchy, "patchy")?,
        grainy: slice(&grainy, "grainy")?,
        grain_table: slice(&grain_table, "grain_table")?,
        seed,
    };
    let out = slice_mut(&mut out, "out")?;
    py.detach(|| render_texture(&inputs, out))
        .map_err(to_py_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sim_render_optical, m)?)?;
    m.add_function(wrap_pyfunction!(sim_render_radar, m)?)?;
    m.add_function(wrap_pyfunction!(sim_upsample, m)?)?;
    m.add_function(wrap_pyfunction!(sim_snow_fraction, m)?)?;
    m.add_function(wrap_pyfunction!(sim_burn_edges, m)?)?;
    m.add_function(wrap_pyfunction!(sim_texture, m)?)?;
    Ok(())
}
