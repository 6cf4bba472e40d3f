//! Parcel events column-wise: deterministic event ids and canonical JSON documents.
//!
//! The output is byte-identical to Python's `ParcelEvent.to_json()` (`json` with sorted keys,
//! compact separators, `ensure_ascii=False`, `allow_nan=False`): floats in `repr` form
//! (shortest round-trip digits), strings with the same escapes. Columns come in as UTF-8
//! blobs with end offsets, so no per-event Python object is needed to build them.

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::kernel_error::{input_error, KernelError};

/// Hex digits of an event id (the first 128 bits of the SHA-256).
pub const ID_HEX_DIGITS: usize = 32;
/// Between the hashed fields of an id: the ASCII unit separator, absent from real ids.
const SEP: u8 = 0x1f;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// A column of strings: string `i` is `bytes[ends[i - 1]..ends[i]]` (from 0 for the first).
#[derive(Clone, Copy, Debug)]
pub struct Strings<'a> {
    bytes: &'a [u8],
    ends: &'a [i64],
}

impl<'a> Strings<'a> {
    /// Checks that the offsets are non-decreasing, within `bytes` and on UTF-8 boundaries.
    pub fn new(bytes: &'a [u8], ends: &'a [i64], what: &str) -> Result<Self, KernelError> {
        let mut start = 0_i64;
        for &end in ends {
            if end < start || end as usize > bytes.len() {
                return Err(input_error(format!(
                    "{what}: string offsets out of order or range"
                )));
            }
            start = end;
        }
        if std::str::from_utf8(bytes).is_err() {
            return Err(input_error(format!("{what}: not UTF-8")));
        }
        let column = Self { bytes, ends };
        if (0..ends.len()).any(|i| std::str::from_utf8(column.get_bytes(i)).is_err()) {
            return Err(input_error(format!("{what}: offsets split a character")));
        }
        Ok(column)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn get_bytes(&self, i: usize) -> &'a [u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    /// String `i` (checked UTF-8 in `new`).
    pub fn get(&self, i: usize) -> &'a str {
        std::str::from_utf8(self.get_bytes(i)).unwrap_or_default()
    }
}

/// The id fields of one event; `product` and `tile` are empty for facts that do not hash them.
pub struct IdFields<'a> {
    pub parcel: Strings<'a>,
    pub kind: Strings<'a>,
    pub start: Strings<'a>,
    pub end: Strings<'a>,
    pub product: Strings<'a>,
    pub tile: Strings<'a>,
}

/// The hex ids of all events, concatenated (`ID_HEX_DIGITS` bytes each).
pub fn event_ids(fields: &IdFields<'_>) -> Result<Vec<u8>, KernelError> {
    let n = fields.parcel.len();
    let columns = [
        &fields.kind,
        &fields.start,
        &fields.end,
        &fields.product,
        &fields.tile,
    ];
    if columns.iter().any(|c| c.len() != n) {
        return Err(input_error("event id columns differ in length"));
    }
    let mut out = vec![0_u8; n * ID_HEX_DIGITS];
    out.par_chunks_mut(ID_HEX_DIGITS)
        .enumerate()
        .with_min_len(1024)
        .for_each(|(i, slot)| {
            let mut hasher = Sha256::new();
            hasher.update(fields.parcel.get_bytes(i));
            for column in columns {
                hasher.update([SEP]);
                hasher.update(column.get_bytes(i));
            }
            let digest = hasher.finalize();
            for (pair, byte) in slot.chunks_mut(2).zip(digest.iter()) {
                pair[0] = HEX[usize::from(byte >> 4)];
                pair[1] = HEX[usize::from(byte & 0x0f)];
            }
        });
    Ok(out)
}

/// The columns of a batch of events (see `encode_events`).
pub struct EventColumns<'a> {
    pub event_id: Strings<'a>,
    pub kind: Strings<'a>,
    pub parcel: Strings<'a>,
    pub tile: Strings<'a>,
    pub time: Strings<'a>,
    pub detected_at: Strings<'a>,
    pub model_name: Strings<'a>,
    pub model_version: Strings<'a>,
    pub schema_version: Strings<'a>,
    pub confidence: &'a [f64],
    /// All product ids in event order, and the end of each event's ids in that column.
    pub products: Strings<'a>,
    pub product_ends: &'a [i64],
    /// Window start and end, used where `has_window` is true.
    pub window_start: Strings<'a>,
    pub window_end: Strings<'a>,
    pub has_window: &'a [bool],
    /// Evidence statistics: names sorted, values `[stat * n + event]`, NaN written `null`,
    /// the key left out where `stat_present` is false.
    pub stat_names: &'a [String],
    pub stat_values: &'a [f64],
    pub stat_present: &'a [bool],
}

impl EventColumns<'_> {
    fn check(&self) -> Result<usize, KernelError> {
        let n = self.event_id.len();
        let strings = [
            &self.kind,
            &self.parcel,
            &self.tile,
            &self.time,
            &self.detected_at,
            &self.model_name,
            &self.model_version,
            &self.schema_version,
            &self.window_start,
            &self.window_end,
        ];
        let per_event = [
            self.confidence.len(),
            self.product_ends.len(),
            self.has_window.len(),
        ];
        if strings.iter().any(|c| c.len() != n) || per_event.iter().any(|&len| len != n) {
            return Err(input_error("event columns differ in length"));
        }
        let cells = self.stat_names.len() * n;
        if self.stat_values.len() != cells || self.stat_present.len() != cells {
            return Err(input_error("event statistics are not stats x events"));
        }
        if !self.stat_names.windows(2).all(|w| w[0] < w[1]) {
            return Err(input_error(
                "event statistic names are not sorted and distinct",
            ));
        }
        let mut start = 0_i64;
        for &end in self.product_ends {
            if end < start || end as usize > self.products.len() {
                return Err(input_error("product id offsets out of order or range"));
            }
            start = end;
        }
        Ok(n)
    }
}

/// The canonical JSON document of every event, in order.
///
/// Refuses an infinite statistic or confidence as Python's encoder does (`allow_nan=False`),
/// naming the event.
pub fn encode_events(columns: &EventColumns<'_>) -> Result<Vec<Vec<u8>>, KernelError> {
    let n = columns.check()?;
    (0..n)
        .into_par_iter()
        .with_min_len(1024)
        .map(|i| {
            let mut doc = Vec::with_capacity(512);
            write_event(&mut doc, columns, i, n).map(|()| doc)
        })
        .collect()
}

fn write_event(
    out: &mut Vec<u8>,
    c: &EventColumns<'_>,
    i: usize,
    n: usize,
) -> Result<(), KernelError> {
    let id = c.event_id.get(i);
    let number = |out: &mut Vec<u8>, x: f64| {
        if x.is_finite() {
            write_float(out, x);
            Ok(())
        } else {
            Err(input_error(format!(
                "event {id} is not valid JSON: out of range float values are not JSON compliant: {x}"
            )))
        }
    };
    out.extend_from_slice(b"{\"confidence\":");
    number(out, c.confidence[i])?;
    out.extend_from_slice(b",\"detected_at\":");
    write_string(out, c.detected_at.get(i));
    out.extend_from_slice(b",\"event_id\":");
    write_string(out, id);
    out.extend_from_slice(b",\"evidence\":{\"product_ids\":[");
    let first = if i == 0 {
        0
    } else {
        c.product_ends[i - 1] as usize
    };
    for (k, p) in (first..c.product_ends[i] as usize).enumerate() {
        if k > 0 {
            out.push(b',');
        }
        write_string(out, c.products.get(p));
    }
    out.extend_from_slice(b"],\"stats\":{");
    let mut comma = false;
    for (s, name) in c.stat_names.iter().enumerate() {
        if !c.stat_present[s * n + i] {
            continue;
        }
        if comma {
            out.push(b',');
        }
        comma = true;
        write_string(out, name);
        out.push(b':');
        let value = c.stat_values[s * n + i];
        if value.is_nan() {
            out.extend_from_slice(b"null");
        } else {
            number(out, value)?;
        }
    }
    out.extend_from_slice(b"}},\"model\":{\"name\":");
    write_string(out, c.model_name.get(i));
    out.extend_from_slice(b",\"version\":");
    write_string(out, c.model_version.get(i));
    out.extend_from_slice(b"},\"parcel_id\":");
    write_string(out, c.parcel.get(i));
    out.extend_from_slice(b",\"schema_version\":");
    write_string(out, c.schema_version.get(i));
    out.extend_from_slice(b",\"tile\":");
    write_string(out, c.tile.get(i));
    out.extend_from_slice(b",\"time\":");
    write_string(out, c.time.get(i));
    out.extend_from_slice(b",\"type\":");
    write_string(out, c.kind.get(i));
    if c.has_window[i] {
        out.extend_from_slice(b",\"window\":{\"end\":");
        write_string(out, c.window_end.get(i));
        out.extend_from_slice(b",\"start\":");
        write_string(out, c.window_start.get(i));
        out.push(b'}');
    }
    out.push(b'}');
    Ok(())
}

/// A JSON string as Python's `json` writes it with `ensure_ascii=False`: `"` and `\` escaped,
/// `\n \r \t \b \f` by name, other control characters as `\u00XX`, the rest as UTF-8.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0f)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// A finite float as Python's `repr` writes it: the shortest digits that round-trip (the
/// closest to the value, an exact tie to even), fixed notation for decimal exponents
/// -4..=15 (with `.0` when integral), otherwise `d.ddde±XX`.
pub fn write_float(out: &mut Vec<u8>, x: f64) {
    let (digits, exponent) = shortest_digits(x.abs());
    if x.is_sign_negative() {
        out.push(b'-');
    }
    let point = exponent + 1; // digits before the decimal point
    if !(-3..=16).contains(&point) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        out.extend_from_slice(format!("e{sign}{:02}", exponent.abs()).as_bytes());
    } else if point <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-point) as usize));
        out.extend_from_slice(&digits);
    } else {
        let point = point as usize;
        if point >= digits.len() {
            out.extend_from_slice(&digits);
            out.extend(std::iter::repeat_n(b'0', point - digits.len()));
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits[..point]);
            out.push(b'.');
            out.extend_from_slice(&digits[point..]);
        }
    }
}

/// Significant digits and decimal exponent of a non-negative finite float, as Python's repr
/// picks them.
fn shortest_digits(x: f64) -> (Vec<u8>, i32) {
    // Rust's `{:e}` gives the shortest round-trip digits, but breaks an exact tie between two
    // equally close candidates upwards where Python (David Gay's dtoa) goes to even. A tie:
    // the exact value has one significant digit more than the shortest, and it is a 5.
    let (digits, exponent) = scientific(&format!("{x:e}"));
    let Some((exact, power)) = exact_decimal(x) else {
        return (digits, exponent);
    };
    let k = digits.len() as u32;
    if exact % 10 != 5 || exact.checked_ilog10() != Some(k) {
        return (digits, exponent);
    }
    let mut kept = exact / 10;
    if kept % 2 == 1 {
        kept += 1;
    }
    let text = kept.to_string();
    // At a power of two the gap below is half the gap above: the even candidate may not read
    // back as `x`, and then the other one is the only shortest.
    if format!("{text}e{}", power + 1).parse::<f64>() != Ok(x) {
        return (digits, exponent);
    }
    let even_exponent = power + text.len() as i32;
    let mut even = text.into_bytes();
    while even.len() > 1 && even.last() == Some(&b'0') {
        even.pop();
    }
    (even, even_exponent)
}

/// `x` as `n * 10^p` with `n` not a multiple of 10, when `n` fits 128 bits; None otherwise
/// (then `x` has more significant digits than a tie of shortest candidates can have).
fn exact_decimal(x: f64) -> Option<(u128, i32)> {
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1_u64 << 52) - 1);
    let (mut mantissa, mut exp2) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1_u64 << 52), biased - 1075)
    };
    if mantissa == 0 {
        return None;
    }
    let zeros = mantissa.trailing_zeros();
    mantissa >>= zeros;
    exp2 += zeros as i32;
    if exp2 < 0 {
        // m / 2^n = m * 5^n / 10^n; past n = 25 that is over 18 significant digits.
        let n = exp2.unsigned_abs();
        (n <= 25).then(|| (u128::from(mantissa) * 5_u128.pow(n), exp2))
    } else if exp2 <= 70 {
        let mut n = u128::from(mantissa) << exp2;
        let mut power = 0;
        while n % 10 == 0 {
            n /= 10;
            power += 1;
        }
        Some((n, power))
    } else {
        None // an integer whose last significant digit is even: never a tie
    }
}

/// Digits and exponent of Rust's `{:e}` text of a non-negative float.
fn scientific(text: &str) -> (Vec<u8>, i32) {
    let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    (digits, exponent.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(x: f64) -> String {
        let mut out = Vec::new();
        write_float(&mut out, x);
        String::from_utf8(out).unwrap()
    }

    #[test]
    #[allow(clippy::excessive_precision)] // exact values of ties, written out on purpose
    fn floats_read_as_python_repr() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (-2.5e300, "-2.5e+300"),
            (5e-324, "5e-324"),
            (0.10000000149011612, "0.10000000149011612"),
            // exact ties between two shortest candidates go to even, as in Python
            (0.83728790283203125, "0.8372879028320312"),
            (0.5, "0.5"),
            (2.5e-7, "2.5e-07"),
            (9.5, "9.5"),
            (5.960464477539063e-08, "5.960464477539063e-08"), // 2^-24: one candidate reads back
        ];
        for (x, text) in cases {
            assert_eq!(float(x), text, "{x:e}");
        }
    }

    #[test]
    fn strings_escape_as_python_json() {
        let mut out = Vec::new();
        write_string(&mut out, "a\"b\\c\nd\u{1}é\u{7f}");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\u{7f}\"".as_bytes());
    }

    #[test]
    fn ids_hash_the_separated_fields() {
        let (p, k, t, e) = (b"P1", b"observation", b"T", b"");
        let ends = [2_i64];
        let col = |b: &'static [u8]| {
            let end: &'static [i64] = Box::leak(vec![b.len() as i64].into_boxed_slice());
            Strings::new(b, end, "x").unwrap()
        };
        let fields = IdFields {
            parcel: Strings::new(p, &ends, "parcel").unwrap(),
            kind: col(k),
            start: col(t),
            end: col(t),
            product: col(e),
            tile: col(e),
        };
        let ids = event_ids(&fields).unwrap();
        let expected = Sha256::digest(b"P1\x1fobservation\x1fT\x1fT\x1f\x1f");
        let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(std::str::from_utf8(&ids).unwrap(), &hex[..ID_HEX_DIGITS]);
    }

    #[test]
    fn bad_offsets_are_refused() {
        assert!(Strings::new(b"ab", &[3], "x").is_err());
        assert!(Strings::new(b"ab", &[2, 1], "x").is_err());
        assert!(Strings::new("é".as_bytes(), &[1, 2], "x").is_err());
    }
}
