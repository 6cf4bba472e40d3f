//! Practice detection: observation rows onto the model's grid, peak decoding, evidence rows.
//! Row columns come in as 1-D numpy arrays, borrowed without copying.

use numpy::ndarray::Array3;
use numpy::{
    IntoPyArray, PyArray1, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray3,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::arrays::{slice, slice_mut};
use super::interrupt::{input_err, run_interruptible, to_py_err};
use crate::event_json::Strings;
use crate::practice_events::{practice_events, EventCalendar, PeakTable};
use crate::practice_grid::{
    decode_peaks, grid_batches, nearest_rows, row_kinds, series_grid, Chunk, Floats, GridLayout,
    RowChunks, RowCodes, RowTable, SeriesPlan,
};
use crate::practice_strings::{string_ranks, ViewChunk, ViewColumn};

type Column<'py, T> = PyReadonlyArray1<'py, T>;

/// A chunk of a float column as Arrow holds it: values, and the validity bitmap with its bit
/// offset when some values are null. A column is a list of them.
type FloatChunk<'py> = (Column<'py, f64>, Option<(Column<'py, u8>, usize)>);
type FloatColumn<'py> = Vec<FloatChunk<'py>>;

fn chunks<'a>(column: &'a FloatColumn<'_>, what: &str) -> PyResult<Vec<Chunk<'a>>> {
    column
        .iter()
        .map(|(values, validity)| {
            let validity = match validity {
                Some((bits, offset)) => Some((slice(bits, what)?, *offset)),
                None => None,
            };
            Ok(Chunk {
                values: slice(values, what)?,
                validity,
            })
        })
        .collect()
}

/// How the columns are cut: as the first one (the kernels check the others).
fn row_chunks(first: Option<&Vec<Chunk<'_>>>) -> PyResult<RowChunks> {
    let lengths: Vec<usize> = first.map_or(vec![], |c| c.iter().map(|c| c.values.len()).collect());
    RowChunks::new(&lengths).map_err(to_py_err)
}

/// A chunk of an Arrow string-view column: its views (16 bytes a row), validity bitmap with
/// its bit offset when some rows are null, and data buffers. A column is a list of them.
type ViewChunkIn<'py> = (
    Column<'py, u8>,
    Option<(Column<'py, u8>, usize)>,
    Vec<Column<'py, u8>>,
);

fn view_column<'a>(chunks: &'a [ViewChunkIn<'_>], what: &str) -> PyResult<ViewColumn<'a>> {
    let chunks = chunks
        .iter()
        .map(|(views, validity, buffers)| {
            let validity = match validity {
                Some((bits, offset)) => Some((slice(bits, what)?, *offset)),
                None => None,
            };
            Ok(ViewChunk {
                views: slice(views, what)?,
                validity,
                buffers: buffers
                    .iter()
                    .map(|b| slice(b, what))
                    .collect::<PyResult<_>>()?,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    ViewColumn::new(chunks).map_err(to_py_err)
}

type RanksOut<'py> = (Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<u64>>);

/// Each row's rank among the distinct values of a string column (byte order, nulls last),
/// and the first row of each distinct value, in rank order.
#[pyfunction]
fn practice_string_ranks<'py>(
    py: Python<'py>,
    column: Vec<ViewChunkIn<'py>>,
) -> PyResult<RanksOut<'py>> {
    let column = view_column(&column, "string column")?;
    let (rank, first) = py.detach(|| string_ranks(&column));
    let first: Vec<u64> = first.into_iter().map(|r| r as u64).collect();
    Ok((rank.into_pyarray(py), first.into_pyarray(py)))
}

type KindsOut<'py> = (Bound<'py, PyArray1<u8>>, Bound<'py, PyArray1<bool>>);

/// Each row's kind and whether it may be an event's evidence, from its sensor and source
/// codes, valid fraction, NDVI and (when S1 rows feed the model) VV and VH.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn practice_row_kinds<'py>(
    py: Python<'py>,
    sensor: Column<'py, u8>,
    source: Column<'py, u8>,
    valid_fraction: FloatColumn<'py>,
    ndvi: FloatColumn<'py>,
    s1: Option<(FloatColumn<'py>, FloatColumn<'py>)>,
    min_valid: f64,
    evidence_min_valid: f64,
) -> PyResult<KindsOut<'py>> {
    let valid_fraction = chunks(&valid_fraction, "valid_fraction")?;
    let ndvi = chunks(&ndvi, "NDVI")?;
    let s1 = match &s1 {
        Some((vv, vh)) => Some((chunks(vv, "VV")?, chunks(vh, "VH")?)),
        None => None,
    };
    let index = row_chunks(Some(&ndvi))?;
    let floats = |chunks| Floats {
        chunks,
        rows: &index,
    };
    let codes = RowCodes {
        sensor: slice(&sensor, "sensor")?,
        source: slice(&source, "source")?,
        valid_fraction: floats(&valid_fraction),
        ndvi: floats(&ndvi),
        s1: s1.as_ref().map(|(vv, vh)| (floats(vv), floats(vh))),
    };
    let (kind, evidence) = py
        .detach(|| row_kinds(&codes, min_valid, evidence_min_valid))
        .map_err(to_py_err)?;
    Ok((kind.into_pyarray(py), evidence.into_pyarray(py)))
}

/// A float column's chunks as `PracticeGridInput` keeps them: the arrays, not borrowed yet.
type HeldChunk = (Py<PyArray1<f64>>, Option<(Py<PyArray1<u8>>, usize)>);
type HeldColumn = Vec<HeldChunk>;

/// The rows of an observation table and the grid layout, as the grid kernels take them:
/// built once (the layout checked then), then `series_grid` (the whole grid at once) or
/// `grid_batches` (batch by batch). Holds the row arrays; each call borrows them read-only.
#[pyclass(name = "PracticeGridInput", module = "monitor._core", frozen)]
pub struct PracticeGridInput {
    parcel: Py<PyArray1<u32>>,
    n_parcels: usize,
    micros: Py<PyArray1<i64>>,
    kind: Py<PyArray1<u8>>,
    tile: Py<PyArray1<u32>>,
    s2: Vec<HeldColumn>,
    s1: Option<(HeldColumn, HeldColumn)>,
    layout: GridLayout,
}

/// `column` borrowed read-only (an error, not a panic, when Python writes to it meanwhile).
fn borrow<'py, T: numpy::Element>(
    py: Python<'py>,
    column: &Py<PyArray1<T>>,
    what: &str,
) -> PyResult<Column<'py, T>> {
    column
        .bind(py)
        .try_readonly()
        .map_err(|e| input_err(format!("{what}: {e}")))
}

fn borrow_floats<'py>(
    py: Python<'py>,
    column: &HeldColumn,
    what: &str,
) -> PyResult<FloatColumn<'py>> {
    column
        .iter()
        .map(|(values, validity)| {
            let validity = match validity {
                Some((bits, offset)) => Some((borrow(py, bits, what)?, *offset)),
                None => None,
            };
            Ok((borrow(py, values, what)?, validity))
        })
        .collect()
}

impl PracticeGridInput {
    /// `kernel` on the rows, borrowed in place.
    fn with_rows<T>(
        &self,
        py: Python<'_>,
        kernel: impl FnOnce(&RowTable<'_>) -> PyResult<T>,
    ) -> PyResult<T> {
        let (parcel, micros) = (
            borrow(py, &self.parcel, "parcel")?,
            borrow(py, &self.micros, "micros")?,
        );
        let (kind, tile) = (
            borrow(py, &self.kind, "kind")?,
            borrow(py, &self.tile, "tile")?,
        );
        let s2 = self
            .s2
            .iter()
            .enumerate()
            .map(|(i, c)| borrow_floats(py, c, &format!("S2 feature {i}")))
            .collect::<PyResult<Vec<_>>>()?;
        let s1 = match &self.s1 {
            Some((vv, vh)) => Some((borrow_floats(py, vv, "VV")?, borrow_floats(py, vh, "VH")?)),
            None => None,
        };
        let s2 = s2
            .iter()
            .enumerate()
            .map(|(i, c)| chunks(c, &format!("S2 feature {i}")))
            .collect::<PyResult<Vec<_>>>()?;
        let s1 = match &s1 {
            Some((vv, vh)) => Some((chunks(vv, "VV")?, chunks(vh, "VH")?)),
            None => None,
        };
        let index = row_chunks(s2.first())?;
        let floats = |chunks| Floats {
            chunks,
            rows: &index,
        };
        let rows = RowTable {
            parcel: slice(&parcel, "parcel")?,
            n_parcels: self.n_parcels,
            micros: slice(&micros, "micros")?,
            kind: slice(&kind, "kind")?,
            tile: slice(&tile, "tile")?,
            s2: s2.iter().map(|c| floats(c)).collect(),
            s1: s1.as_ref().map(|(vv, vh)| (floats(vv), floats(vh))),
        };
        kernel(&rows)
    }
}

/// The layout's channels are in range and its grid is not empty.
fn check_layout(layout: &GridLayout) -> PyResult<()> {
    let masks = [
        layout.s2_observed,
        layout.s2_reconstructed,
        layout.s1_observed,
    ];
    let mut channels = layout
        .s2_channels
        .iter()
        .chain(&layout.s1_channels)
        .chain(&masks);
    if layout.bin_days < 1 || layout.n_bins == 0 || channels.any(|&c| c >= layout.n_channels) {
        return Err(input_err(format!(
            "bad grid layout: bin_days {}, n_bins {}, channels out of {}",
            layout.bin_days, layout.n_bins, layout.n_channels
        )));
    }
    Ok(())
}

type GridOut<'py> = (
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray3<f32>>,
);

type KeysOut<'py> = (
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<u32>>,
);

#[pymethods]
impl PracticeGridInput {
    /// Row columns (parcel ranks, times in microseconds, `KIND_*`, tile ranks, S2 features
    /// with NDVI first, VV and VH or None; features as Arrow chunks, cut alike) and the
    /// layout: the grid, each S2 feature's channel and (centre, scale), the mask channels,
    /// VV, VH and VH - VV's channels and norms.
    #[new]
    #[pyo3(signature = (
        parcel, n_parcels, micros, kind, tile, s2, s1, start_doy, bin_days, n_bins, n_channels,
        s2_channels, s2_norm, s2_observed, s2_reconstructed, s1_channels, s1_norm, s1_observed
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        parcel: Py<PyArray1<u32>>,
        n_parcels: usize,
        micros: Py<PyArray1<i64>>,
        kind: Py<PyArray1<u8>>,
        tile: Py<PyArray1<u32>>,
        s2: Vec<HeldColumn>,
        s1: Option<(HeldColumn, HeldColumn)>,
        start_doy: i64,
        bin_days: i64,
        n_bins: usize,
        n_channels: usize,
        s2_channels: Vec<usize>,
        s2_norm: Vec<(f32, f32)>,
        s2_observed: usize,
        s2_reconstructed: usize,
        s1_channels: [usize; 3],
        s1_norm: [(f32, f32); 3],
        s1_observed: usize,
    ) -> PyResult<Self> {
        let layout = GridLayout {
            start_doy,
            bin_days,
            n_bins,
            n_channels,
            s2_channels,
            s2_norm,
            s2_observed,
            s2_reconstructed,
            s1_channels,
            s1_norm,
            s1_observed,
        };
        check_layout(&layout)?;
        Ok(PracticeGridInput {
            parcel,
            n_parcels,
            micros,
            kind,
            tile,
            s2,
            s1,
            layout,
        })
    }

    /// Parcel-year series on the day-of-year grid: (parcel rank, year, tile rank, values
    /// `[series, n_channels, n_bins]`).
    fn series_grid<'py>(&self, py: Python<'py>) -> PyResult<GridOut<'py>> {
        let layout = &self.layout;
        let grid = self.with_rows(py, |rows| {
            py.detach(|| series_grid(rows, layout)).map_err(to_py_err)
        })?;
        let n = grid.parcel.len();
        let values = Array3::from_shape_vec((n, layout.n_channels, layout.n_bins), grid.values)
            .map_err(|e| input_err(e.to_string()))?;
        Ok((
            grid.parcel.into_pyarray(py),
            grid.year.into_pyarray(py),
            grid.tile.into_pyarray(py),
            values.into_pyarray(py),
        ))
    }

    /// `series_grid` batch by batch: each thread fills `batch` series at a time into its
    /// buffer of `buffers` (`[batch, n_channels, n_bins]` float32, reused) and calls
    /// `run(buffer index, first series, series count)` with the GIL, which reads that buffer
    /// before the thread fills it again. Returns the series' (parcel rank, year, tile rank);
    /// raises the first error `run` raised. Interruptible between batches.
    fn grid_batches<'py>(
        &self,
        py: Python<'py>,
        batch: usize,
        buffers: Vec<Bound<'py, PyArray3<f32>>>,
        run: Bound<'py, PyAny>,
    ) -> PyResult<KeysOut<'py>> {
        if buffers.is_empty() {
            return Err(input_err("no buffer to fill"));
        }
        let mut guards = buffers
            .iter()
            .map(|b| {
                b.try_readwrite()
                    .map_err(|e| input_err(format!("buffer: {e}")))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let slices = guards
            .iter_mut()
            .map(|g| slice_mut(g, "buffer"))
            .collect::<PyResult<Vec<_>>>()?;
        let run = run.unbind();
        let layout = &self.layout;
        let (parcel, year, tile) = self.with_rows(py, |rows| {
            run_interruptible(py, |cancel| {
                let plan = SeriesPlan::new(rows, layout)?;
                let call = |index: usize, first: usize, values: &[f32]| {
                    let n = values.len() / (layout.n_channels * layout.n_bins);
                    Python::attach(|py| run.call1(py, (index, first, n)).map(drop))
                };
                let done = grid_batches(rows, layout, &plan, batch, slices, cancel, &call)?;
                Ok(done.map(|()| (plan.parcel, plan.year, plan.tile)))
            })?
        })?;
        Ok((
            parcel.into_pyarray(py),
            year.into_pyarray(py),
            tile.into_pyarray(py),
        ))
    }
}

type PeaksOut<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
);

/// Peaks of `probability [series, practices, bins]`: (series, practice, bin, confidence).
#[pyfunction]
fn practice_decode_peaks<'py>(
    py: Python<'py>,
    probability: PyReadonlyArray3<'py, f32>,
    threshold: f32,
    radius: Vec<usize>,
) -> PyResult<PeaksOut<'py>> {
    let shape = probability.shape().to_vec();
    let data = slice(&probability, "probability")?;
    let peaks = py
        .detach(|| decode_peaks(data, shape[1], shape[2], threshold, &radius))
        .map_err(to_py_err)?;
    Ok((
        peaks.series.into_pyarray(py),
        peaks.practice.into_pyarray(py),
        peaks.bin.into_pyarray(py),
        peaks.confidence.into_pyarray(py),
    ))
}

type RowsOut<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>);

/// Per event, the candidate row of its parcel just before and just after it (-1: none).
#[pyfunction]
fn practice_nearest_rows<'py>(
    py: Python<'py>,
    parcel: Column<'py, u32>,
    micros: Column<'py, i64>,
    candidate: Column<'py, bool>,
    n_parcels: usize,
    event_parcel: Column<'py, u32>,
    event_micros: Column<'py, i64>,
) -> PyResult<RowsOut<'py>> {
    let (parcel, micros) = (slice(&parcel, "parcel")?, slice(&micros, "micros")?);
    let candidate = slice(&candidate, "candidate")?;
    let event_parcel = slice(&event_parcel, "event_parcel")?;
    let event_micros = slice(&event_micros, "event_micros")?;
    let (before, after) = py
        .detach(|| {
            nearest_rows(
                parcel,
                micros,
                candidate,
                n_parcels,
                event_parcel,
                event_micros,
            )
        })
        .map_err(to_py_err)?;
    Ok((before.into_pyarray(py), after.into_pyarray(py)))
}

type StrColumn<'py> = (Bound<'py, PyBytes>, Column<'py, i64>);

fn strings<'a>(column: &'a StrColumn<'_>, what: &str) -> PyResult<Strings<'a>> {
    Strings::new(column.0.as_bytes(), slice(&column.1, what)?, what).map_err(to_py_err)
}

type EventsOut<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyBytes>,
);

/// The events of decoded peaks, sorted by parcel, date and type, those near an `emitted` id
/// left out: (peak index, date and id-window start in days since 1970, ids as 32 hex bytes
/// each).
#[pyfunction]
#[pyo3(signature = (
    series, practice, bin, series_parcel, series_year, parcel_ids, types, start_doy, bin_days,
    window_days, moved_windows, emitted
))]
#[allow(clippy::too_many_arguments)]
fn practice_events_of_peaks<'py>(
    py: Python<'py>,
    series: Column<'py, i64>,
    practice: Column<'py, i64>,
    bin: Column<'py, f64>,
    series_parcel: Column<'py, u32>,
    series_year: Column<'py, i32>,
    parcel_ids: StrColumn<'py>,
    types: StrColumn<'py>,
    start_doy: i64,
    bin_days: i64,
    window_days: i64,
    moved_windows: i64,
    emitted: StrColumn<'py>,
) -> PyResult<EventsOut<'py>> {
    let peaks = PeakTable {
        series: slice(&series, "series")?,
        practice: slice(&practice, "practice")?,
        bin: slice(&bin, "bin")?,
        series_parcel: slice(&series_parcel, "series_parcel")?,
        series_year: slice(&series_year, "series_year")?,
        parcel_ids: strings(&parcel_ids, "parcel_ids")?,
        types: strings(&types, "types")?,
    };
    let calendar = EventCalendar {
        start_doy,
        bin_days,
        window_days,
        moved_windows,
    };
    let emitted = strings(&emitted, "emitted")?;
    let events = py
        .detach(|| practice_events(&peaks, calendar, &emitted))
        .map_err(to_py_err)?;
    Ok((
        events.peak.into_pyarray(py),
        events.day.into_pyarray(py),
        events.window_start.into_pyarray(py),
        PyBytes::new(py, &events.ids),
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(practice_string_ranks, m)?)?;
    m.add_function(wrap_pyfunction!(practice_row_kinds, m)?)?;
    m.add_class::<PracticeGridInput>()?;
    m.add_function(wrap_pyfunction!(practice_decode_peaks, m)?)?;
    m.add_function(wrap_pyfunction!(practice_nearest_rows, m)?)?;
    m.add_function(wrap_pyfunction!(practice_events_of_peaks, m)?)?;
    Ok(())
}
