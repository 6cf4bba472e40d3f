//! Parcel events: ids and canonical JSON documents of whole columns. String columns come in as
//! (UTF-8 bytes, end offsets) pairs, numbers as 1-D numpy arrays, borrowed without copying.

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use super::arrays::slice;
use super::interrupt::to_py_err;
use crate::event_json::{self, EventColumns, IdFields, Strings, ID_HEX_DIGITS};

type Column<'py, T> = PyReadonlyArray1<'py, T>;
type StrColumn<'py> = (Bound<'py, PyBytes>, Column<'py, i64>);

fn strings<'a>(column: &'a StrColumn<'_>, what: &str) -> PyResult<Strings<'a>> {
    Strings::new(column.0.as_bytes(), slice(&column.1, what)?, what).map_err(to_py_err)
}

/// Event ids (32 hex digits) of whole columns: SHA-256 of the separated id fields.
#[pyfunction]
fn event_ids<'py>(
    py: Python<'py>,
    parcel: StrColumn<'py>,
    kind: StrColumn<'py>,
    start: StrColumn<'py>,
    end: StrColumn<'py>,
    product: StrColumn<'py>,
    tile: StrColumn<'py>,
) -> PyResult<Vec<Bound<'py, PyString>>> {
    let fields = IdFields {
        parcel: strings(&parcel, "parcel")?,
        kind: strings(&kind, "type")?,
        start: strings(&start, "start")?,
        end: strings(&end, "end")?,
        product: strings(&product, "product")?,
        tile: strings(&tile, "tile")?,
    };
    let hex = py
        .detach(|| event_json::event_ids(&fields))
        .map_err(to_py_err)?;
    Ok(hex
        .chunks(ID_HEX_DIGITS)
        .map(|id| PyString::new(py, std::str::from_utf8(id).unwrap_or_default()))
        .collect())
}

/// (key, value) Kafka records of whole columns: the parcel id and the event's canonical JSON.
#[pyfunction]
#[pyo3(signature = (
    event_id, kind, parcel, tile, time, detected_at, model_name, model_version, schema_version,
    confidence, products, product_ends, window_start, window_end, has_window, stat_names,
    stat_values, stat_present
))]
#[allow(clippy::too_many_arguments)]
fn encode_events<'py>(
    py: Python<'py>,
    event_id: StrColumn<'py>,
    kind: StrColumn<'py>,
    parcel: StrColumn<'py>,
    tile: StrColumn<'py>,
    time: StrColumn<'py>,
    detected_at: StrColumn<'py>,
    model_name: StrColumn<'py>,
    model_version: StrColumn<'py>,
    schema_version: StrColumn<'py>,
    confidence: Column<'py, f64>,
    products: StrColumn<'py>,
    product_ends: Column<'py, i64>,
    window_start: StrColumn<'py>,
    window_end: StrColumn<'py>,
    has_window: Column<'py, bool>,
    stat_names: Vec<String>,
    stat_values: Column<'py, f64>,
    stat_present: Column<'py, bool>,
) -> PyResult<Vec<Bound<'py, PyTuple>>> {
    let columns = EventColumns {
        event_id: strings(&event_id, "event_id")?,
        kind: strings(&kind, "type")?,
        parcel: strings(&parcel, "parcel_id")?,
        tile: strings(&tile, "tile")?,
        time: strings(&time, "time")?,
        detected_at: strings(&detected_at, "detected_at")?,
        model_name: strings(&model_name, "model_name")?,
        model_version: strings(&model_version, "model_version")?,
        schema_version: strings(&schema_version, "schema_version")?,
        confidence: slice(&confidence, "confidence")?,
        products: strings(&products, "product_ids")?,
        product_ends: slice(&product_ends, "product_ends")?,
        window_start: strings(&window_start, "window_start")?,
        window_end: strings(&window_end, "window_end")?,
        has_window: slice(&has_window, "has_window")?,
        stat_names: &stat_names,
        stat_values: slice(&stat_values, "stat_values")?,
        stat_present: slice(&stat_present, "stat_present")?,
    };
    let docs = py
        .detach(|| event_json::encode_events(&columns))
        .map_err(to_py_err)?;
    docs.iter()
        .enumerate()
        .map(|(i, doc)| {
            let key = PyBytes::new(py, columns.parcel.get(i).as_bytes());
            PyTuple::new(py, [key, PyBytes::new(py, doc)])
        })
        .collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(event_ids, m)?)?;
    m.add_function(wrap_pyfunction!(encode_events, m)?)?;
    Ok(())
}
