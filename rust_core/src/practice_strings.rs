//! Practice detection: the parcel id (and tile) column ranked in Rust, read in place from
//! its Arrow string views.
//!
//! Polars took two 64-bit hashes of every parcel id (12.8 M rows: ~0.2 CPU-s and 200 MB of
//! fresh pages) before grouping them; here rows are grouped by their exact bytes, and most
//! rows skip the hash table (`group_part`'s guess).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use rayon::prelude::*;

use crate::arrow_validity::{self, Validity};
use crate::kernel_error::KernelError;

/// Bytes of an Arrow string view: length (u32, little-endian), then the string itself when it
/// fits in the 12 bytes left, else its first 4 bytes, buffer index and offset (u32 each).
const VIEW: usize = 16;
const INLINE: usize = 12;

/// A chunk of an Arrow `string_view` (or `binary_view`) column.
#[derive(Clone, Debug)]
pub struct ViewChunk<'a> {
    /// `VIEW` bytes per row.
    pub views: &'a [u8],
    /// Validity bitmap and the bit of the chunk's first row, when some rows are null.
    pub validity: Validity<'a>,
    /// The data buffers long strings point into.
    pub buffers: Vec<&'a [u8]>,
}

fn word(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
}

impl<'a> ViewChunk<'a> {
    pub fn len(&self) -> usize {
        self.views.len() / VIEW
    }

    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    fn view(&self, row: usize) -> &'a [u8] {
        &self.views[row * VIEW..(row + 1) * VIEW]
    }

    fn is_valid(&self, row: usize) -> bool {
        arrow_validity::is_valid(self.validity, row)
    }

    /// The row's bytes, None when null (views checked by `ViewColumn::new`).
    fn value(&self, row: usize) -> Option<&'a [u8]> {
        if !self.is_valid(row) {
            return None;
        }
        let view = self.view(row);
        let len = word(view, 0);
        if len <= INLINE {
            return Some(&view[4..4 + len]);
        }
        let (buffer, offset) = (word(view, 8), word(view, 12));
        Some(&self.buffers[buffer][offset..offset + len])
    }

    /// Whether every view points inside its buffers and the bitmap covers every row.
    fn check(&self) -> bool {
        let whole = arrow_validity::covers(self.validity, self.len());
        let inside = |view: &[u8]| {
            let len = word(view, 0);
            let end = word(view, 12).checked_add(len);
            len <= INLINE
                || (self.buffers.get(word(view, 8)))
                    .is_some_and(|b| end.is_some_and(|e| e <= b.len()))
        };
        whole && self.views.len().is_multiple_of(VIEW) && self.views.chunks_exact(VIEW).all(inside)
    }
}

/// A string column as its Arrow chunks, checked once.
pub struct ViewColumn<'a> {
    chunks: Vec<ViewChunk<'a>>,
}

/// The fewest rows of one part of `string_ranks` (one part per thread: the parts' tables are
/// merged serially, and a part of interleaved rows holds nearly all the values), and of one
/// task renumbering them.
const PIECE: usize = 1 << 16;

/// A part of a column's rows: the pieces of chunks it covers (chunk, rows in the chunk), in
/// order, and its entries of an output with one entry per row.
type Part<'c, 'a, 'o, T> = (Vec<(&'c ViewChunk<'a>, Range<usize>)>, &'o mut [T]);

impl<'a> ViewColumn<'a> {
    pub fn new(chunks: Vec<ViewChunk<'a>>) -> Result<Self, KernelError> {
        if !chunks.par_iter().all(ViewChunk::check) {
            return Err(KernelError::Input(
                "a string view points outside its buffers, or a bitmap is short".into(),
            ));
        }
        let column = ViewColumn { chunks };
        if u32::try_from(column.len()).is_err() {
            return Err(KernelError::Input("more than 2^32 rows".into()));
        }
        Ok(column)
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(ViewChunk::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `out` (one entry per row) cut into parts of `rows` rows (the last one shorter).
    fn parts<'c, 'o, T>(&'c self, mut out: &'o mut [T], rows: usize) -> Vec<Part<'c, 'a, 'o, T>> {
        let rows = rows.max(1);
        let mut parts = Vec::new();
        let mut current: Vec<(&ViewChunk<'a>, Range<usize>)> = Vec::new();
        let mut room = rows;
        for chunk in &self.chunks {
            let mut at = 0;
            while at < chunk.len() {
                let take = room.min(chunk.len() - at);
                current.push((chunk, at..at + take));
                (at, room) = (at + take, room - take);
                if room == 0 {
                    let (mine, rest) = out.split_at_mut(rows);
                    parts.push((std::mem::take(&mut current), mine));
                    (out, room) = (rest, rows);
                }
            }
        }
        if !current.is_empty() {
            parts.push((current, out));
        }
        parts
    }
}

/// A value as a hash table key: up to 16 bytes held in the key (zero-padded, little-endian),
/// compared as two words with no pointer to follow; a longer one as its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key<'a> {
    Null,
    Short(u128, u32),
    Long(&'a [u8]),
}

const SHORT: usize = 16;

/// One multiply-xorshift round (FxHash's constant, then murmur's finaliser shift): the keys
/// are short and not adversarial; SipHash would cost more than the grouping.
fn mix(h: u64, word: u64) -> u64 {
    let h = (h.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    h ^ (h >> 29)
}

impl Key<'_> {
    fn hash64(&self) -> u64 {
        match *self {
            Key::Null => 0,
            Key::Short(bytes, len) => mix(mix(u64::from(len), bytes as u64), (bytes >> 64) as u64)
                .wrapping_mul(0xff51_afd7_ed55_8ccd),
            Key::Long(bytes) => {
                let mut h = bytes.len() as u64;
                for chunk in bytes.chunks(8) {
                    let mut w = [0u8; 8];
                    w[..chunk.len()].copy_from_slice(chunk);
                    h = mix(h, u64::from_le_bytes(w));
                }
                h.wrapping_mul(0xff51_afd7_ed55_8ccd)
            }
        }
    }
}

impl std::hash::Hash for Key<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash64());
    }
}

/// `Key::hash64` is already mixed: the table takes it as it is.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Ids<'a> = HashMap<Key<'a>, u32, BuildHasherDefault<PassThrough>>;

impl<'a> ViewChunk<'a> {
    /// The row's `Key`: an inline value straight from its view, a long one of up to 16 bytes
    /// read as one 16-byte load where its buffer has room.
    #[inline]
    fn key(&self, row: usize) -> Key<'a> {
        if !self.is_valid(row) {
            return Key::Null;
        }
        let view = self.view(row);
        let len = word(view, 0);
        let low = |n: usize| {
            if n >= SHORT {
                u128::MAX
            } else {
                (1u128 << (8 * n)) - 1
            }
        };
        if len <= INLINE {
            let view = u128::from_le_bytes(view.try_into().expect("16-byte view"));
            return Key::Short((view >> 32) & low(len), len as u32);
        }
        let (buffer, offset) = (self.buffers[word(view, 8)], word(view, 12));
        if len > SHORT {
            return Key::Long(&buffer[offset..offset + len]);
        }
        let bytes = match buffer.get(offset..offset + SHORT) {
            Some(b) => u128::from_le_bytes(b.try_into().expect("16 bytes")) & low(len),
            None => {
                let mut b = [0u8; SHORT];
                b[..len].copy_from_slice(&buffer[offset..offset + len]);
                u128::from_le_bytes(b)
            }
        };
        Key::Short(bytes, len as u32)
    }
}

/// A part's groups, numbered in the part in order of first appearance: each one's key, first
/// row in the part and value.
type PartGroups<'a> = Vec<(Key<'a>, usize, Option<&'a [u8]>)>;

/// `group_part`'s guess of a row's group: the group that followed the previous row's group
/// when that one was last seen. Tables come in acquisition order (every parcel's row of one
/// date, then of the next, in the same order) or sorted by parcel: either way the guess is
/// nearly always right, and checking it reads the groups' keys in sequence, where a hash table
/// lookup would miss the cache on every row.
const NO_GROUP: u32 = u32::MAX;

/// Groups of one part of the rows: each row's group written to `group`.
fn group_part<'a>(
    segments: &[(&ViewChunk<'a>, Range<usize>)],
    group: &mut [u32],
) -> PartGroups<'a> {
    let mut ids = Ids::default();
    let mut groups: PartGroups<'a> = Vec::new();
    let mut next_of: Vec<u32> = Vec::new();
    let mut previous = NO_GROUP;
    let mut j = 0;
    for (chunk, range) in segments {
        for row in range.clone() {
            let key = chunk.key(row);
            let is = |g: u32| g != NO_GROUP && groups[g as usize].0 == key;
            let id = if is(previous) {
                previous
            } else if previous != NO_GROUP && is(next_of[previous as usize]) {
                next_of[previous as usize]
            } else {
                let next = groups.len() as u32; // groups <= rows < 2^32
                let id = *ids.entry(key).or_insert(next);
                if id == next {
                    groups.push((key, j, chunk.value(row)));
                    next_of.push(NO_GROUP);
                }
                id
            };
            if previous != NO_GROUP {
                next_of[previous as usize] = id;
            }
            group[j] = id;
            previous = id;
            j += 1;
        }
    }
    groups
}

/// Byte order, nulls last (polars' `sort(nulls_last=True)` of strings).
fn nulls_last(a: Option<&[u8]>, b: Option<&[u8]>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.cmp(y),
        (x, y) => x.is_none().cmp(&y.is_none()),
    }
}

/// The distinct values of a string column sorted by their bytes (nulls last), as each one's
/// first row, and each row's rank among them. Pieces of rows are grouped in parallel, each
/// with its own table; their groups are merged in piece order, sorted, and every row's piece
/// group replaced by its rank in parallel.
pub fn string_ranks(column: &ViewColumn<'_>) -> (Vec<u32>, Vec<usize>) {
    let part = column.len().div_ceil(rayon::current_num_threads());
    string_ranks_in_parts(column, part.max(PIECE))
}

/// `string_ranks`, grouping parts of `part` rows in parallel.
fn string_ranks_in_parts(column: &ViewColumn<'_>, part: usize) -> (Vec<u32>, Vec<usize>) {
    let n = column.len();
    let part = part.max(1);
    let mut rank = vec![0u32; n];
    let part_groups: Vec<PartGroups<'_>> = column
        .parts(&mut rank, part)
        .into_par_iter()
        .map(|(segments, group)| group_part(&segments, group))
        .collect();
    // Merged in row order: a value's first row is its first row in the first part holding it.
    let mut ids = Ids::default();
    let mut distinct: Vec<(usize, Option<&[u8]>)> = Vec::new();
    let global: Vec<Vec<u32>> = part_groups
        .iter()
        .enumerate()
        .map(|(k, groups)| {
            let mut mine = Vec::with_capacity(groups.len());
            for &(key, row, value) in groups {
                let next = distinct.len() as u32;
                mine.push(*ids.entry(key).or_insert_with(|| {
                    distinct.push((k * part + row, value));
                    next
                }));
            }
            mine
        })
        .collect();
    let value = |g: u32| distinct[g as usize].1;
    let mut sorted: Vec<u32> = (0..distinct.len() as u32).collect();
    sorted.sort_unstable_by(|&a, &b| nulls_last(value(a), value(b)));
    let mut rank_of = vec![0u32; distinct.len()];
    for (r, &g) in sorted.iter().enumerate() {
        rank_of[g as usize] = r as u32;
    }
    // Each part's group ids become ranks, in pieces of the part in parallel.
    rank.par_chunks_mut(part)
        .zip(&global)
        .for_each(|(out, global)| {
            let to_rank: Vec<u32> = global.iter().map(|&g| rank_of[g as usize]).collect();
            out.par_chunks_mut(PIECE).for_each(|out| {
                for r in out {
                    *r = to_rank[*r as usize];
                }
            });
        });
    let first = sorted.iter().map(|&g| distinct[g as usize].0).collect();
    (rank, first)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arrow string views of `values` cut into chunks of `cuts` rows, long values in buffers
    /// of at most `buffer` bytes (several per chunk), and nulls in a bitmap at bit `shift`.
    /// A chunk's views, bitmap and buffers.
    type BuiltChunk = (Vec<u8>, Option<Vec<u8>>, Vec<Vec<u8>>);

    struct Built {
        chunks: Vec<BuiltChunk>,
        shift: usize,
    }

    impl Built {
        fn new(values: &[Option<Vec<u8>>], cuts: &[usize], buffer: usize, shift: usize) -> Self {
            let mut chunks = Vec::new();
            let mut at = 0;
            for &len in cuts {
                let rows = &values[at..at + len];
                at += len;
                let mut views = Vec::new();
                let mut buffers: Vec<Vec<u8>> = vec![vec![]];
                let mut bits = vec![0u8; (shift + len).div_ceil(8)];
                for (i, value) in rows.iter().enumerate() {
                    let mut view = [0u8; VIEW];
                    if let Some(v) = value {
                        bits[(shift + i) >> 3] |= 1 << ((shift + i) & 7);
                        view[..4].copy_from_slice(&(v.len() as u32).to_le_bytes());
                        if v.len() <= INLINE {
                            view[4..4 + v.len()].copy_from_slice(v);
                        } else {
                            if buffers.last().unwrap().len() + v.len() > buffer {
                                buffers.push(vec![]);
                            }
                            let b = buffers.len() - 1;
                            view[4..8].copy_from_slice(&v[..4]);
                            view[8..12].copy_from_slice(&(b as u32).to_le_bytes());
                            let offset = buffers[b].len() as u32;
                            view[12..16].copy_from_slice(&offset.to_le_bytes());
                            buffers[b].extend_from_slice(v);
                        }
                    } else {
                        // garbage in a null's view: it must not matter
                        view[..4].copy_from_slice(&3u32.to_le_bytes());
                        view[4] = b'x';
                    }
                    views.extend_from_slice(&view);
                }
                let nulls = rows.iter().any(Option::is_none);
                chunks.push((views, nulls.then_some(bits), buffers));
            }
            Built { chunks, shift }
        }

        fn column(&self) -> ViewColumn<'_> {
            let chunks = self
                .chunks
                .iter()
                .map(|(views, bits, buffers)| ViewChunk {
                    views,
                    validity: bits.as_ref().map(|b| (b.as_slice(), self.shift)),
                    buffers: buffers.iter().map(Vec::as_slice).collect(),
                })
                .collect();
            ViewColumn::new(chunks).unwrap()
        }
    }

    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (self.0 >> 33) % n
        }
    }

    /// Values of every kind of key: inline (up to 12 bytes), short in a buffer (13 to 16), long.
    fn value(k: u64) -> Vec<u8> {
        match k % 4 {
            0 => format!("{k}").into_bytes(),
            1 => format!("c{k:06}/31UFS01").into_bytes(), // 15 bytes
            2 => format!("parcel/{k:012}/FR-2025").into_bytes(), // 27 bytes
            _ => vec![b'a' + (k % 7) as u8; (k % 17) as usize], // 0 to 16 bytes, shared prefixes
        }
    }

    fn reference(values: &[Option<Vec<u8>>]) -> (Vec<u32>, Vec<usize>) {
        let mut distinct: Vec<&Option<Vec<u8>>> = values.iter().collect();
        distinct.sort_by(|a, b| nulls_last(a.as_deref(), b.as_deref()));
        distinct.dedup();
        let rank: Vec<u32> = values
            .iter()
            .map(|v| distinct.iter().position(|d| *d == v).unwrap() as u32)
            .collect();
        let first = distinct
            .iter()
            .map(|d| values.iter().position(|v| v == *d).unwrap())
            .collect();
        (rank, first)
    }

    #[test]
    fn ranks_match_a_sort_of_the_distinct_values() {
        let mut rng = Rng(11);
        for (n, distinct, nulls) in [
            (0usize, 1u64, false),
            (1, 1, true),
            (900, 40, true),
            (2000, 300, false),
        ] {
            // random order, then acquisition order (every id once per date, in one order)
            let random: Vec<Option<Vec<u8>>> = (0..n)
                .map(|_| (!nulls || rng.below(20) > 0).then(|| value(rng.below(distinct))))
                .collect();
            let dates: Vec<Option<Vec<u8>>> =
                (0..n as u64).map(|i| Some(value(i % distinct))).collect();
            for values in [random, dates] {
                let expected = reference(&values);
                for cuts in [vec![n], vec![n / 3, n - n / 3 - n / 5, n / 5]] {
                    for shift in [0, 5] {
                        let built = Built::new(&values, &cuts, 64, shift);
                        for part in [1, 7, 100, n.max(1)] {
                            let got = string_ranks_in_parts(&built.column(), part);
                            assert_eq!(got, expected, "n {n}, cuts {cuts:?}, part {part}");
                        }
                        assert_eq!(string_ranks(&built.column()), expected);
                    }
                }
            }
        }
    }

    #[test]
    fn views_outside_their_buffers_are_refused() {
        let built = Built::new(&[Some(value(2))], &[1], 64, 0);
        let (views, _, buffers) = &built.chunks[0];
        let short = &buffers[0][..10];
        let chunk = ViewChunk {
            views,
            validity: None,
            buffers: vec![short],
        };
        assert!(ViewColumn::new(vec![chunk]).is_err());
        let chunk = ViewChunk {
            views: &views[..15],
            validity: None,
            buffers: vec![&buffers[0]],
        };
        assert!(ViewColumn::new(vec![chunk]).is_err());
    }
}
