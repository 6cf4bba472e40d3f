//! Criterion bench of the zonal pass: a 2000 x 2000 grid cut into 25 x 25-pixel parcels
//! (6400 parcels), 4 uint16 bands with nodata, a validity mask and NDVI.
//! The full-tile figure (10980 x 10980, 10 bands, ~200 000 parcels) is measured once by a
//! driver, not here: criterion repeats its input many times.

use std::sync::atomic::AtomicBool;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rust_core::grid::Grid;
use rust_core::label::LabelRaster;
use rust_core::raster_value::{Band, BandData};
use rust_core::zonal::{zonal_statistics, ZonalOptions};

const SIDE: usize = 2000;
const BLOCK: usize = 25;

fn block_labels() -> LabelRaster {
    let per_row = SIDE.div_ceil(BLOCK);
    let labels = (0..SIDE * SIDE)
        .map(|i| ((i / SIDE / BLOCK) * per_row + (i % SIDE) / BLOCK + 1) as u32)
        .collect();
    let grid = Grid::new(SIDE, SIDE, [10.0, 0.0, 0.0, 0.0, -10.0, 0.0]);
    LabelRaster::from_labels(grid, per_row * per_row, labels)
}

/// Deterministic pseudo-random reflectances with ~1 % nodata (0).
fn band(seed: u64) -> Vec<u16> {
    let mut state = seed;
    (0..SIDE * SIDE)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (state >> 33) as u16 % 10000;
            if v < 100 {
                0
            } else {
                v
            }
        })
        .collect()
}

fn bench_zonal(c: &mut Criterion) {
    let labels = block_labels();
    let data: Vec<Vec<u16>> = (0..4).map(band).collect();
    let bands: Vec<Band<'_>> = data
        .iter()
        .map(|d| Band {
            scale: 1e-4,
            offset: 0.0,
            nodata: Some(0.0),
            data: BandData::U16(d),
        })
        .collect();
    let valid: Vec<bool> = (0..SIDE * SIDE).map(|i| i % 7 != 0).collect();
    let options = ZonalOptions {
        ndvi: Some((0, 1)),
        weighted_mean: false,
    };
    let cancel = AtomicBool::new(false);
    let mut group = c.benchmark_group("zonal");
    group.sample_size(10);
    group.throughput(Throughput::Elements((SIDE * SIDE * bands.len()) as u64));
    group.bench_function("2000x2000_4bands_u16_6400parcels", |b| {
        b.iter(|| zonal_statistics(&labels, &bands, Some(&valid), &options, &cancel).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_zonal);
criterion_main!(benches);
