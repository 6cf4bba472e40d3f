//! Practice events from decoded peaks, per event in one pass: the date, the id window, the
//! deterministic event id, the suppression of events already emitted, and the output order.
//!
//! Equal, event for event, to the column expressions it replaces in `monitor.practices`: the
//! date's day of year is rounded half to even (polars' `round`), ids are `event_id_for`'s
//! SHA-256 of parcel, type and RFC 3339 window bounds.

use std::collections::HashSet;
use std::fmt::Write as _;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::event_json::{Strings, ID_HEX_DIGITS};
use crate::kernel_error::{input_error, KernelError};

/// Between the hashed fields of an id, as in `event_json` (and `monitor.events._SEP`).
const SEP: u8 = 0x1f;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The grid of the model and the id windows, in days.
#[derive(Clone, Copy, Debug)]
pub struct EventCalendar {
    /// Day of year of the first bin's first day (1 = 1 January).
    pub start_doy: i64,
    pub bin_days: i64,
    /// Ids hash the `window_days`-day window (counted from `start_doy`) holding the date.
    pub window_days: i64,
    /// A redetection up to this many windows away from an emitted id is the same event.
    pub moved_windows: i64,
}

/// The peaks of `decode_peaks` with what each series is (parcel rank and year).
pub struct PeakTable<'a> {
    pub series: &'a [i64],
    pub practice: &'a [i64],
    pub bin: &'a [f64],
    pub series_parcel: &'a [u32],
    pub series_year: &'a [i32],
    /// Parcel ids by rank (ranks follow the ids' byte order).
    pub parcel_ids: Strings<'a>,
    /// Event type of each practice index.
    pub types: Strings<'a>,
}

/// The kept events, sorted by parcel, date and type name.
#[derive(Debug, Default, PartialEq)]
pub struct PracticeEvents {
    /// Index of each event's peak in the `PeakTable`.
    pub peak: Vec<i64>,
    /// The event's date, days since 1970-01-01.
    pub day: Vec<i32>,
    /// First day of its id window, days since 1970-01-01 (the window ends `window_days` later).
    pub window_start: Vec<i32>,
    /// The ids, `ID_HEX_DIGITS` hex bytes each.
    pub ids: Vec<u8>,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's civil_from_days).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Midnight UTC of a day as `monitor.events.rfc3339` writes it.
fn rfc3339_midnight(out: &mut String, days: i64) {
    let (y, m, d) = civil_from_days(days);
    // `write!` to a String cannot fail.
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T00:00:00.000000Z");
}

/// The id of (parcel, type, window starting on `start`), in hex.
fn event_id(parcel: &[u8], kind: &[u8], start: i64, window_days: i64) -> [u8; ID_HEX_DIGITS] {
    let mut bounds = String::with_capacity(56);
    rfc3339_midnight(&mut bounds, start);
    let middle = bounds.len();
    rfc3339_midnight(&mut bounds, start + window_days);
    let mut hasher = Sha256::new();
    hasher.update(parcel);
    for field in [
        kind,
        &bounds.as_bytes()[..middle],
        &bounds.as_bytes()[middle..],
    ] {
        hasher.update([SEP]);
        hasher.update(field);
    }
    // no product id and no tile: empty fields
    hasher.update([SEP, SEP]);
    let digest = hasher.finalize();
    let mut hex = [0u8; ID_HEX_DIGITS];
    for (pair, byte) in hex.chunks_mut(2).zip(digest.iter()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
    hex
}

/// The events of `peaks`: date, id window and id of each; those whose id, or whose practice's
/// id up to `moved_windows` windows away, is in `emitted` are left out.
pub fn practice_events(
    peaks: &PeakTable<'_>,
    calendar: EventCalendar,
    emitted: &Strings<'_>,
) -> Result<PracticeEvents, KernelError> {
    let n = peaks.series.len();
    if peaks.practice.len() != n || peaks.bin.len() != n {
        return Err(input_error("peak arrays differ in length"));
    }
    if peaks.series_year.len() != peaks.series_parcel.len() {
        return Err(input_error("series arrays differ in length"));
    }
    if calendar.bin_days < 1 || calendar.window_days < 1 || calendar.moved_windows < 0 {
        return Err(input_error(format!("bad event calendar {calendar:?}")));
    }
    let n_series = peaks.series_parcel.len() as i64;
    if let Some(bad) = peaks.series.iter().find(|&&s| s < 0 || s >= n_series) {
        return Err(input_error(format!("peak series {bad} out of range")));
    }
    let n_types = peaks.types.len() as i64;
    if let Some(bad) = peaks.practice.iter().find(|&&p| p < 0 || p >= n_types) {
        return Err(input_error(format!("peak practice {bad} out of range")));
    }
    let n_parcels = peaks.parcel_ids.len();
    if let Some(bad) = peaks
        .series_parcel
        .iter()
        .find(|&&p| p as usize >= n_parcels)
    {
        return Err(input_error(format!(
            "series parcel rank {bad} out of range"
        )));
    }
    let known: HashSet<&[u8]> = (0..emitted.len())
        .map(|i| emitted.get(i).as_bytes())
        .collect();
    // Sort rank of each type name: the output is sorted by name, not by practice index.
    let mut by_name: Vec<usize> = (0..peaks.types.len()).collect();
    by_name.sort_by_key(|&k| peaks.types.get(k));
    let mut type_rank = vec![0u8; by_name.len()];
    for (rank, &k) in by_name.iter().enumerate() {
        type_rank[k] = rank as u8;
    }

    let (start_doy, bin_days, window_days) = (
        calendar.start_doy,
        calendar.bin_days as f64,
        calendar.window_days,
    );
    let mut events: Vec<(u32, i32, u8, i64, i32, [u8; ID_HEX_DIGITS])> = (0..n)
        .into_par_iter()
        .with_min_len(1024)
        .filter_map(|i| {
            let s = peaks.series[i] as usize;
            let k = peaks.practice[i] as usize;
            let (parcel, year) = (peaks.series_parcel[s], i64::from(peaks.series_year[s]));
            // the centre of the (fractional) bin, to the nearest day
            let doy = (start_doy as f64 + bin_days * peaks.bin[i] + (bin_days - 1.0) / 2.0)
                .round_ties_even() as i64;
            let window = (doy - start_doy).div_euclid(window_days);
            let new_year = days_from_civil(year, 1, 1);
            let window_day = |w: i64| new_year + start_doy - 1 + w * window_days;
            let (parcel_id, kind) = (
                peaks.parcel_ids.get(parcel as usize).as_bytes(),
                peaks.types.get(k).as_bytes(),
            );
            let id = event_id(parcel_id, kind, window_day(window), window_days);
            if !known.is_empty() {
                let moved = (1..=calendar.moved_windows).flat_map(|d| [window - d, window + d]);
                let mut same = std::iter::once(id)
                    .chain(moved.map(|w| event_id(parcel_id, kind, window_day(w), window_days)));
                if same.any(|other| known.contains(&other[..])) {
                    return None;
                }
            }
            let day = new_year + doy - 1;
            Some((
                parcel,
                day as i32,
                type_rank[k],
                i as i64,
                window_day(window) as i32,
                id,
            ))
        })
        .collect();
    events.par_sort_unstable_by_key(|e| (e.0, e.1, e.2));
    let mut out = PracticeEvents {
        peak: Vec::with_capacity(events.len()),
        day: Vec::with_capacity(events.len()),
        window_start: Vec::with_capacity(events.len()),
        ids: Vec::with_capacity(events.len() * ID_HEX_DIGITS),
    };
    for (_, day, _, peak, window_start, id) in events {
        out.peak.push(peak);
        out.day.push(day);
        out.window_start.push(window_start);
        out.ids.extend_from_slice(&id);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_json::{event_ids, IdFields};

    fn strings<'a>(bytes: &'a [u8], ends: &'a [i64]) -> Strings<'a> {
        Strings::new(bytes, ends, "test").unwrap()
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn ids_are_the_event_json_ids() {
        let start = days_from_civil(2025, 3, 9);
        let ours = event_id(b"p-1", b"practice.mowing", start, 8);
        let (parcel, kind) = (b"p-1".as_slice(), b"practice.mowing".as_slice());
        let (from, to) = (
            b"2025-03-09T00:00:00.000000Z".as_slice(),
            b"2025-03-17T00:00:00.000000Z".as_slice(),
        );
        let fields = IdFields {
            parcel: strings(parcel, &[3]),
            kind: strings(kind, &[15]),
            start: strings(from, &[27]),
            end: strings(to, &[27]),
            product: strings(b"", &[0]),
            tile: strings(b"", &[0]),
        };
        assert_eq!(event_ids(&fields).unwrap(), ours.to_vec());
    }

    #[test]
    fn events_are_dated_sorted_and_suppressed_near_emitted_ids() {
        let calendar = EventCalendar {
            start_doy: 32,
            bin_days: 5,
            window_days: 8,
            moved_windows: 2,
        };
        let types = b"practice.mowingpractice.harvest";
        let peaks = PeakTable {
            series: &[1, 0, 0],
            practice: &[0, 1, 0],
            bin: &[10.0, 3.5, 3.5],
            series_parcel: &[0, 0],
            series_year: &[2025, 2024],
            parcel_ids: strings(b"a", &[1]),
            types: strings(types, &[15, 31]),
        };
        let none = strings(b"", &[]);
        let all = practice_events(&peaks, calendar, &none).unwrap();
        // 2024 before 2025; on the same day harvest before mowing
        assert_eq!(all.peak, vec![0, 1, 2]);
        // bin 10 of 2024: day of year 32 + 50 + 2 = 84
        assert_eq!(all.day[0] as i64, days_from_civil(2024, 1, 1) + 83);
        // bin 3.5: day of year 32 + 17.5 + 2 = 51.5, to even: 52 (21 February)
        assert_eq!(all.day[1] as i64, days_from_civil(2025, 2, 21));
        // its window, 2, starts on day of year 32 + 16
        assert_eq!(all.window_start[2] as i64, days_from_civil(2025, 2, 17));
        // an emitted id two windows away suppresses; three windows away does not
        let window = |w: i64| days_from_civil(2025, 2, 17) + w * 8;
        let moved = |w: i64| event_id(b"a", b"practice.mowing", window(w), 8);
        for (shift, kept) in [(2, 2), (-2, 2), (3, 3)] {
            let id = moved(shift);
            let emitted = strings(&id, &[32]);
            let out = practice_events(&peaks, calendar, &emitted).unwrap();
            assert_eq!(out.peak.len(), kept, "shift {shift}");
        }
    }
}
