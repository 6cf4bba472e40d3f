//! Label raster build on a synthetic tile of field-like parcels: a jittered lattice of
//! quadrilaterals of 0.4-18 ha (6-43 px sides at 10 m) covering the whole grid.
//!
//! `cargo bench --bench label_raster` runs a 3660x3660 ninth of a tile (~22k parcels);
//! `LABEL_BENCH_FULL=1` adds the full 10980x10980 tile (~200k parcels).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rust_core::grid::Grid;
use rust_core::label_build::build_label_raster;

const PIXEL: f64 = 10.0;
const ORIGIN: (f64, f64) = (600_000.0, 5_000_040.0);

/// Small deterministic generator (xorshift64*), so the bench needs no extra crate.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let unit = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }
}

/// Lattice lines across `size` pixels with random spacing of 6-43 px.
fn lattice(rng: &mut Rng, size: usize) -> Vec<f64> {
    let mut lines = vec![0.0];
    while *lines.last().unwrap() < size as f64 {
        let next = lines.last().unwrap() + rng.uniform(6.0, 43.0);
        lines.push(next.min(size as f64));
    }
    lines
}

/// Ragged arrays (coords, ring, polygon and geometry offsets) of the parcels of `grid`.
struct Parcels {
    coords: Vec<f64>,
    rings: Vec<i64>,
    polygons: Vec<i64>,
    geometries: Vec<i64>,
}

fn field_parcels(size: usize, seed: u64) -> Parcels {
    let mut rng = Rng(seed);
    let xs = lattice(&mut rng, size);
    let ys = lattice(&mut rng, size);
    // Jitter interior vertices by up to 2.5 px: fields stay simple quadrilaterals.
    let jitter = |rng: &mut Rng, v: f64| {
        if v == 0.0 || v == size as f64 {
            v
        } else {
            v + rng.uniform(-2.5, 2.5)
        }
    };
    let vertices: Vec<Vec<(f64, f64)>> = ys
        .iter()
        .map(|&y| {
            xs.iter()
                .map(|&x| (jitter(&mut rng, x), jitter(&mut rng, y)))
                .collect()
        })
        .collect();
    let mut parcels = Parcels {
        coords: Vec::new(),
        rings: vec![0],
        polygons: vec![0],
        geometries: vec![0],
    };
    for r in 0..ys.len() - 1 {
        for c in 0..xs.len() - 1 {
            let corners = [
                vertices[r][c],
                vertices[r][c + 1],
                vertices[r + 1][c + 1],
                vertices[r + 1][c],
                vertices[r][c],
            ];
            for (px, py) in corners {
                parcels.coords.push(ORIGIN.0 + px * PIXEL);
                parcels.coords.push(ORIGIN.1 - py * PIXEL);
            }
            parcels.rings.push(parcels.coords.len() as i64 / 2);
            parcels.polygons.push(parcels.rings.len() as i64 - 1);
            parcels.geometries.push(parcels.polygons.len() as i64 - 1);
        }
    }
    parcels
}

fn bench_tile(c: &mut Criterion, size: usize) {
    let parcels = field_parcels(size, 42);
    let grid = Grid::new(size, size, [PIXEL, 0.0, ORIGIN.0, 0.0, -PIXEL, ORIGIN.1]);
    let n = parcels.geometries.len() - 1;
    let mut group = c.benchmark_group(format!("label_raster_{size}px_{n}_parcels"));
    group.sample_size(10);
    for coverage in [false, true] {
        group.bench_with_input(
            BenchmarkId::new("build", if coverage { "coverage" } else { "labels" }),
            &coverage,
            |b, &coverage| {
                b.iter(|| {
                    black_box(
                        build_label_raster(
                            grid,
                            &parcels.coords,
                            &parcels.rings,
                            &parcels.polygons,
                            &parcels.geometries,
                            coverage,
                        )
                        .unwrap(),
                    )
                })
            },
        );
    }
    group.finish();
}

fn label_raster(c: &mut Criterion) {
    bench_tile(c, 3660);
    if std::env::var_os("LABEL_BENCH_FULL").is_some() {
        bench_tile(c, 10980);
    }
}

criterion_group!(benches, label_raster);
criterion_main!(benches);
