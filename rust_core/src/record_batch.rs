//! Kafka record batches (message format v2, "magic 2") of whole keyed record lists.
//!
//! kafka-python encodes each record in pure Python inside `send`; here the records of one
//! call are grouped by partition (input order kept within a partition) and each group is cut
//! into batches of at most `max_batch_bytes`, laid out as Kafka's `DefaultRecordBatch`:
//!
//! ```text
//! BaseOffset i64 | Length i32 | PartitionLeaderEpoch i32 | Magic i8 | CRC u32 | Attributes i16
//! LastOffsetDelta i32 | FirstTimestamp i64 | MaxTimestamp i64 | ProducerId i64
//! ProducerEpoch i16 | BaseSequence i32 | RecordCount i32 | Records
//! Record = Length varint | Attributes i8 | TimestampDelta varlong | OffsetDelta varint
//!          | KeyLength varint | Key | ValueLength varint | Value | HeaderCount varint
//! ```
//!
//! `key_partition` is Kafka's default partitioner for keyed records (murmur2, Java's and
//! kafka-python's), so a batch's partition is the one `send` would pick.
//!
//! Integers are big-endian, varints zigzag-encoded; the CRC-32C covers everything from the
//! attributes on. A batch leaves here without a producer (id, epoch and sequence -1, not
//! transactional); `seal` fills them in when the producer drains the batch, as kafka-python
//! does for its own batches, and recomputes the CRC.

use crate::kernel_error::{input_error, KernelError};

/// Bytes before the first record.
pub const HEADER_BYTES: usize = 61;
/// Where the CRC-covered part starts (the attributes).
const ATTRIBUTES_AT: usize = 21;
const CRC_AT: usize = 17;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const TRANSACTIONAL: i16 = 0x10;
const MAGIC: i8 = 2;

/// The partition Kafka's default partitioner gives `key` among `n_partitions` (> 0): murmur2
/// of the key, sign bit cleared, modulo the count.
pub fn key_partition(key: &[u8], n_partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % n_partitions
}

/// Kafka's murmur2 (seed 0x9747b28c), with Java's wrapping int arithmetic.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// One encoded batch: its partition index, record count and bytes.
#[derive(Debug)]
pub struct EncodedBatch {
    pub partition: usize,
    pub records: usize,
    pub bytes: Vec<u8>,
}

/// The producer fields of a batch, set when it is drained.
#[derive(Clone, Copy, Debug)]
pub struct ProducerState {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn varint_len(value: i64) -> usize {
    let mut v = zigzag(value);
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = zigzag(value);
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Size of a record's body (after its length varint): attributes, timestamp delta 0, offset
/// delta, key, value, no headers.
fn body_len(offset_delta: usize, key: &[u8], value: &[u8]) -> usize {
    1 + 1
        + varint_len(offset_delta as i64)
        + varint_len(key.len() as i64)
        + key.len()
        + varint_len(value.len() as i64)
        + value.len()
        + 1
}

struct Builder {
    partition: usize,
    records: usize,
    bytes: Vec<u8>,
}

impl Builder {
    fn new(partition: usize, capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity);
        bytes.resize(HEADER_BYTES, 0);
        Self {
            partition,
            records: 0,
            bytes,
        }
    }

    /// Appends when the record fits in `max_batch_bytes` (the first record always does, as
    /// in kafka-python: a record larger than the batch size gets a batch of its own).
    fn try_append(&mut self, key: &[u8], value: &[u8], max_batch_bytes: usize) -> bool {
        let body = body_len(self.records, key, value);
        let size = body + varint_len(body as i64);
        if self.records > 0 && self.bytes.len() + size > max_batch_bytes {
            return false;
        }
        let out = &mut self.bytes;
        put_varint(out, body as i64);
        out.push(0); // attributes
        out.push(0); // timestamp delta: every record has the batch's timestamp
        put_varint(out, self.records as i64);
        put_varint(out, key.len() as i64);
        out.extend_from_slice(key);
        put_varint(out, value.len() as i64);
        out.extend_from_slice(value);
        out.push(0); // no headers
        self.records += 1;
        true
    }

    fn finish(mut self, timestamp_ms: i64) -> EncodedBatch {
        let length = (self.bytes.len() - 12) as i32;
        let last_offset_delta = self.records as i32 - 1;
        let head = &mut self.bytes[..HEADER_BYTES];
        head[0..8].copy_from_slice(&0_i64.to_be_bytes()); // base offset, set by the broker
        head[8..12].copy_from_slice(&length.to_be_bytes());
        head[12..16].copy_from_slice(&0_i32.to_be_bytes()); // leader epoch, set by the broker
        head[16] = MAGIC as u8;
        head[21..23].copy_from_slice(&0_i16.to_be_bytes()); // no compression, create time
        head[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
        head[27..35].copy_from_slice(&timestamp_ms.to_be_bytes());
        head[35..43].copy_from_slice(&timestamp_ms.to_be_bytes());
        head[57..61].copy_from_slice(&(self.records as i32).to_be_bytes());
        seal(
            &mut self.bytes,
            ProducerState {
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                transactional: false,
            },
        );
        EncodedBatch {
            partition: self.partition,
            records: self.records,
            bytes: self.bytes,
        }
    }
}

/// Record batches of `keys[i]`/`values[i]` sent to partition `partitions[i]` (an index below
/// `n_partitions`): per partition in ascending order, its records in input order, cut so that
/// a batch stays within `max_batch_bytes` unless it holds a single record.
pub fn encode_batches(
    keys: &[&[u8]],
    values: &[&[u8]],
    partitions: &[i64],
    n_partitions: usize,
    max_batch_bytes: usize,
    timestamp_ms: i64,
) -> Result<Vec<EncodedBatch>, KernelError> {
    if keys.len() != values.len() || keys.len() != partitions.len() {
        return Err(input_error(format!(
            "record batches: {} keys, {} values and {} partitions differ in length",
            keys.len(),
            values.len(),
            partitions.len()
        )));
    }
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); n_partitions];
    for (row, &partition) in partitions.iter().enumerate() {
        let index = usize::try_from(partition)
            .ok()
            .filter(|&p| p < n_partitions)
            .ok_or_else(|| {
                input_error(format!(
                    "record batches: partition index {partition} outside 0..{n_partitions}"
                ))
            })?;
        rows[index].push(row);
    }
    let capacity = max_batch_bytes.min(1 << 20);
    let mut batches = Vec::new();
    for (partition, rows) in rows.iter().enumerate() {
        let mut builder: Option<Builder> = None;
        for &row in rows {
            let current = builder.get_or_insert_with(|| Builder::new(partition, capacity));
            if !current.try_append(keys[row], values[row], max_batch_bytes) {
                let full = std::mem::replace(current, Builder::new(partition, capacity));
                batches.push(full.finish(timestamp_ms));
                current.try_append(keys[row], values[row], max_batch_bytes);
            }
        }
        if let Some(last) = builder {
            batches.push(last.finish(timestamp_ms));
        }
    }
    Ok(batches)
}

/// Writes the producer fields and the transactional flag into an encoded batch and
/// recomputes its CRC.
pub fn seal(batch: &mut [u8], state: ProducerState) {
    let mut attributes = i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]);
    attributes &= !TRANSACTIONAL;
    if state.transactional {
        attributes |= TRANSACTIONAL;
    }
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&state.producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2]
        .copy_from_slice(&state.producer_epoch.to_be_bytes());
    batch[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4]
        .copy_from_slice(&state.base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Checks that `batch` is one whole v2 batch this module could have written (`seal` input).
pub fn check_batch(batch: &[u8]) -> Result<(), KernelError> {
    if batch.len() < HEADER_BYTES || batch[16] as i8 != MAGIC {
        return Err(input_error("record batch: not a v2 record batch"));
    }
    let length = i32::from_be_bytes([batch[8], batch[9], batch[10], batch[11]]);
    if length as usize + 12 != batch.len() {
        return Err(input_error(format!(
            "record batch: length field {length} does not match {} bytes",
            batch.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varints(values: &[i64]) -> Vec<u8> {
        let mut out = Vec::new();
        for &v in values {
            put_varint(&mut out, v);
        }
        out
    }

    #[test]
    fn varints_are_zigzag_encoded() {
        assert_eq!(
            varints(&[0, -1, 1, 63, 64, 300]),
            [0, 1, 2, 126, 128, 1, 216, 4]
        );
        for v in [0, 1, 63, 64, 8191, 8192, 1 << 40, -5] {
            assert_eq!(varints(&[v]).len(), varint_len(v));
        }
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Values of Kafka's own tests (UtilsTest.testMurmur2), as signed Java ints.
        let cases: [(&[u8], i32); 4] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key) as i32, expected);
        }
        assert_eq!(
            key_partition(b"21", 6),
            (-973_932_308_i32 & 0x7fff_ffff) as u32 % 6
        );
    }

    #[test]
    fn crc32c_of_the_check_string() {
        // The CRC-32C check value of RFC 3720 / iSCSI.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn one_record_batch_layout() {
        let batches = encode_batches(&[b"k"], &[b"vv"], &[0], 1, 1 << 20, 1_000).unwrap();
        assert_eq!(batches.len(), 1);
        let b = &batches[0].bytes;
        // length 9, attrs, ts delta, offset delta, key len 1, "k", value len 2, "vv", headers
        assert_eq!(
            &b[HEADER_BYTES..],
            &[18, 0, 0, 0, 2, b'k', 4, b'v', b'v', 0]
        );
        assert_eq!(
            b.len() - 12,
            i32::from_be_bytes(b[8..12].try_into().unwrap()) as usize
        );
        assert_eq!(&b[43..51], &(-1_i64).to_be_bytes());
        assert_eq!(&b[27..35], &1_000_i64.to_be_bytes());
        let crc = u32::from_be_bytes(b[17..21].try_into().unwrap());
        assert_eq!(crc, crc32c::crc32c(&b[21..]));
    }

    #[test]
    fn groups_by_partition_in_order_and_splits_at_the_size_limit() {
        let keys: Vec<Vec<u8>> = (0..50).map(|i| format!("key{i}").into_bytes()).collect();
        let values: Vec<Vec<u8>> = (0..50).map(|i| vec![b'x'; 20 + i]).collect();
        let k: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let v: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let parts: Vec<i64> = (0..50).map(|i| i % 3).collect();
        let batches = encode_batches(&k, &v, &parts, 4, 300, 7).unwrap();
        assert!(batches.len() > 3);
        assert!(batches
            .iter()
            .all(|b| b.bytes.len() <= 300 && b.partition < 3));
        assert!(batches.windows(2).all(|w| w[0].partition <= w[1].partition));
        let total: usize = batches.iter().map(|b| b.records).sum();
        assert_eq!(total, 50);
    }

    #[test]
    fn an_oversized_record_gets_a_batch_of_its_own() {
        let big = vec![b'x'; 500];
        let batches = encode_batches(&[b"a", b"b"], &[&big, b"small"], &[0, 0], 1, 200, 0).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].records, 1);
        assert!(batches[0].bytes.len() > 500);
    }

    #[test]
    fn bad_partitions_and_lengths_are_refused() {
        assert!(encode_batches(&[b"a"], &[b"b"], &[3], 3, 100, 0).is_err());
        assert!(encode_batches(&[b"a"], &[b"b"], &[-1], 3, 100, 0).is_err());
        assert!(encode_batches(&[b"a"], &[], &[0], 3, 100, 0).is_err());
    }

    #[test]
    fn seal_sets_the_producer_and_keeps_the_crc_valid() {
        let mut batch = encode_batches(&[b"a"], &[b"b"], &[0], 1, 100, 0)
            .unwrap()
            .remove(0)
            .bytes;
        check_batch(&batch).unwrap();
        seal(
            &mut batch,
            ProducerState {
                producer_id: 42,
                producer_epoch: 3,
                base_sequence: 17,
                transactional: true,
            },
        );
        assert_eq!(&batch[43..51], &42_i64.to_be_bytes());
        assert_eq!(&batch[51..53], &3_i16.to_be_bytes());
        assert_eq!(&batch[53..57], &17_i32.to_be_bytes());
        assert_eq!(&batch[21..23], &0x10_i16.to_be_bytes());
        let crc = u32::from_be_bytes(batch[17..21].try_into().unwrap());
        assert_eq!(crc, crc32c::crc32c(&batch[21..]));
        assert!(check_batch(&batch[..40]).is_err());
    }
}
