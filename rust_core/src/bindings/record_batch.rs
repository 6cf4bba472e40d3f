//! Kafka record batches of whole record lists (`crate::record_batch`): encoded once per send,
//! sealed with the producer's id, epoch and sequence when the producer drains them.

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

use super::interrupt::{input_err, to_py_err};
use crate::record_batch::{self, ProducerState};

/// The partition index Kafka's default partitioner gives each key among `n_partitions`.
#[pyfunction]
fn key_partitions<'py>(
    py: Python<'py>,
    keys: Vec<Bound<'py, PyBytes>>,
    n_partitions: u32,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    if n_partitions == 0 {
        return Err(input_err(
            "key partitions: a topic has at least one partition",
        ));
    }
    let keys: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
    let partitions: Vec<i64> = py.detach(|| {
        keys.iter()
            .map(|key| i64::from(record_batch::key_partition(key, n_partitions)))
            .collect()
    });
    Ok(PyArray1::from_vec(py, partitions))
}

/// `(partition index, record count, batch bytes)` for each v2 record batch of `records`
/// (`(key, value)` pairs), record `i` going to partition index `partitions[i]`.
#[pyfunction]
fn encode_record_batches<'py>(
    py: Python<'py>,
    records: Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>,
    partitions: PyReadonlyArray1<'py, i64>,
    n_partitions: usize,
    max_batch_bytes: usize,
    timestamp_ms: i64,
) -> PyResult<Vec<(usize, usize, Bound<'py, PyBytes>)>> {
    let partitions = partitions
        .as_slice()
        .map_err(|_| input_err("record batches: partitions are not contiguous"))?;
    let keys: Vec<&[u8]> = records.iter().map(|(key, _)| key.as_bytes()).collect();
    let values: Vec<&[u8]> = records.iter().map(|(_, value)| value.as_bytes()).collect();
    let batches = py
        .detach(|| {
            record_batch::encode_batches(
                &keys,
                &values,
                partitions,
                n_partitions,
                max_batch_bytes,
                timestamp_ms,
            )
        })
        .map_err(to_py_err)?;
    Ok(batches
        .into_iter()
        .map(|b| (b.partition, b.records, PyBytes::new(py, &b.bytes)))
        .collect())
}

/// A copy of an encoded `batch` with the producer fields and transactional flag set and the
/// CRC recomputed: the bytes that go on the wire.
#[pyfunction]
fn seal_record_batch<'py>(
    py: Python<'py>,
    batch: &[u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
) -> PyResult<Bound<'py, PyByteArray>> {
    record_batch::check_batch(batch).map_err(to_py_err)?;
    let state = ProducerState {
        producer_id,
        producer_epoch,
        base_sequence,
        transactional,
    };
    PyByteArray::new_with(py, batch.len(), |out| {
        out.copy_from_slice(batch);
        record_batch::seal(out, state);
        Ok(())
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(key_partitions, m)?)?;
    m.add_function(wrap_pyfunction!(encode_record_batches, m)?)?;
    m.add_function(wrap_pyfunction!(seal_record_batch, m)?)?;
    Ok(())
}
