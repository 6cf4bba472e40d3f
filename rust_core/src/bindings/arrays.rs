//! Numpy arrays of any supported dtype, borrowed read-only (no copy) and seen as kernel slices.

use numpy::ndarray::Dimension;
use numpy::{PyReadonlyArray, PyReadonlyArray2, PyReadwriteArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

use super::interrupt::input_err;
use crate::raster_value::BandData;

fn not_contiguous(what: &str, ndim: usize) -> PyErr {
    let order = if ndim > 1 {
        "C-contiguous"
    } else {
        "contiguous"
    };
    input_err(format!("{what} is not {order}"))
}

/// The elements of `array`, borrowed in memory order; `what` names it when it is not
/// contiguous (C order for more than one dimension).
pub fn slice<'a, T: numpy::Element, D: Dimension>(
    array: &'a PyReadonlyArray<'_, T, D>,
    what: &str,
) -> PyResult<&'a [T]> {
    array
        .as_slice()
        .map_err(|_| not_contiguous(what, array.ndim()))
}

/// `slice` of an array the kernel writes into.
pub fn slice_mut<'a, T: numpy::Element, D: Dimension>(
    array: &'a mut PyReadwriteArray<'_, T, D>,
    what: &str,
) -> PyResult<&'a mut [T]> {
    let ndim = array.ndim();
    array.as_slice_mut().map_err(|_| not_contiguous(what, ndim))
}

/// A read-only 2-D raster of one of the dtypes the kernels read.
pub enum Raster2<'py> {
    U8(PyReadonlyArray2<'py, u8>),
    U16(PyReadonlyArray2<'py, u16>),
    I16(PyReadonlyArray2<'py, i16>),
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

impl<'py> Raster2<'py> {
    /// Borrows `obj`, a 2-D C-contiguous array of u8, u16, i16, f32 or f64; `what` names it in
    /// errors.
    pub fn borrow(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        macro_rules! try_dtype {
            ($($variant:ident: $t:ty),*) => {$(
                if let Ok(array) = obj.extract::<PyReadonlyArray2<'py, $t>>() {
                    let raster = Raster2::$variant(array);
                    if !raster.is_c_contiguous() {
                        return Err(input_err(format!("{what} is not C-contiguous")));
                    }
                    return Ok(raster);
                }
            )*};
        }
        try_dtype!(U8: u8, U16: u16, I16: i16, F32: f32, F64: f64);
        let described = match obj.getattr("dtype").and_then(|d| d.str()) {
            Ok(dtype) => format!("{dtype} array of {} dimension(s)", obj.getattr("ndim")?),
            Err(_) => format!("{}", obj.get_type().name()?),
        };
        Err(input_err(format!(
            "{what} must be a 2-D uint8, uint16, int16, float32 or float64 array, got {described}"
        )))
    }

    fn is_c_contiguous(&self) -> bool {
        match self {
            Raster2::U8(a) => a.is_c_contiguous(),
            Raster2::U16(a) => a.is_c_contiguous(),
            Raster2::I16(a) => a.is_c_contiguous(),
            Raster2::F32(a) => a.is_c_contiguous(),
            Raster2::F64(a) => a.is_c_contiguous(),
        }
    }

    pub fn shape(&self) -> (usize, usize) {
        let shape = match self {
            Raster2::U8(a) => a.shape(),
            Raster2::U16(a) => a.shape(),
            Raster2::I16(a) => a.shape(),
            Raster2::F32(a) => a.shape(),
            Raster2::F64(a) => a.shape(),
        };
        (shape[0], shape[1])
    }

    /// The pixels as a kernel slice (contiguity was checked when borrowing).
    pub fn data(&self) -> BandData<'_> {
        const CHECKED: &str = "contiguity checked in Raster2::borrow";
        match self {
            Raster2::U8(a) => BandData::U8(a.as_slice().expect(CHECKED)),
            Raster2::U16(a) => BandData::U16(a.as_slice().expect(CHECKED)),
            Raster2::I16(a) => BandData::I16(a.as_slice().expect(CHECKED)),
            Raster2::F32(a) => BandData::F32(a.as_slice().expect(CHECKED)),
            Raster2::F64(a) => BandData::F64(a.as_slice().expect(CHECKED)),
        }
    }
}
