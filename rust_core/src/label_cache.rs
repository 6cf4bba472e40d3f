//! On-disk cache of a [`LabelRaster`], so a tile's labels are built once per parcel-set version.
//!
//! Format (all little-endian), version 2 (version 1 listed every covered cell and had no
//! coverage flag; such files are refused and rebuilt):
//!
//! | bytes | content |
//! | --- | --- |
//! | 8 | magic `PMLABELS` |
//! | 4 | format version (u32) |
//! | 4 | flags (u32): bit 0 = built with coverage |
//! | 16 | height, width (u64) |
//! | 48 | transform `[a, b, c, d, e, f]` (f64) |
//! | 24 | n_parcels, pixel count, coverage cell count (u64) |
//! | … | `labels` (u32), `offsets` (u64), `pixels` (u32), `cov_offsets` (u64), `cov_pixels` (u32), `cov_fraction` (f64) |
//!
//! Loading checks the file length against the header before allocating anything and the
//! arrays' consistency afterwards, so a truncated or corrupt file is an error, never a panic or
//! a wrong raster. The cache key (which parcels, which grid) is the caller's business.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::grid::Grid;
use rayon::prelude::*;

use crate::label::{LabelRaster, NO_PARCEL};
use crate::polygons::LabelError;

const MAGIC: &[u8; 8] = b"PMLABELS";
const VERSION: u32 = 2;
const FLAG_COVERAGE: u32 = 1;
const HEADER_BYTES: u64 = 8 + 4 + 4 + 16 + 48 + 24;

impl LabelRaster {
    /// Writes the raster to `path` (created or truncated). Not atomic: write to a temporary
    /// name and rename to publish it.
    pub fn save(&self, path: &Path) -> Result<(), LabelError> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        let flags = if self.coverage { FLAG_COVERAGE } else { 0 };
        out.write_all(&flags.to_le_bytes())?;
        for v in [self.grid.height as u64, self.grid.width as u64] {
            out.write_all(&v.to_le_bytes())?;
        }
        write_array(&mut out, &self.grid.transform)?;
        for v in [self.n_parcels, self.pixels.len(), self.cov_pixels.len()] {
            out.write_all(&(v as u64).to_le_bytes())?;
        }
        write_array(&mut out, &self.labels)?;
        write_array(&mut out, &self.offsets)?;
        write_array(&mut out, &self.pixels)?;
        write_array(&mut out, &self.cov_offsets)?;
        write_array(&mut out, &self.cov_pixels)?;
        write_array(&mut out, &self.cov_fraction)?;
        // No fsync: this is a cache. A file torn by a crash fails the checks in `load` and is
        // rebuilt, which costs less than syncing GBs on every save.
        out.flush()?;
        Ok(())
    }

    /// Reads a raster written by [`LabelRaster::save`].
    pub fn load(path: &Path) -> Result<Self, LabelError> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let mut input = BufReader::new(file);
        let mut magic = [0u8; 8];
        read_exact(&mut input, &mut magic)?;
        if &magic != MAGIC {
            return Err(corrupt(
                "not a parcel-monitor label raster (bad magic bytes)",
            ));
        }
        let header: Vec<u32> = read_array(&mut input, 2)?;
        if header[0] != VERSION {
            return Err(corrupt(&format!(
                "format version {} (this build reads {VERSION})",
                header[0]
            )));
        }
        let size: Vec<u64> = read_array(&mut input, 2)?;
        let transform: Vec<f64> = read_array(&mut input, 6)?;
        let counts: Vec<u64> = read_array(&mut input, 3)?;
        let (n_parcels, n_pixels, n_cov) = (counts[0], counts[1], counts[2]);
        let expected = expected_len(size[0], size[1], n_parcels, n_pixels, n_cov)
            .ok_or_else(|| corrupt("header sizes overflow"))?;
        if expected != file_len {
            return Err(corrupt(&format!(
                "header promises {expected} bytes, file has {file_len} (truncated?)"
            )));
        }
        let (height, width) = (size[0] as usize, size[1] as usize);
        let (n, n_pixels, n_cov) = (n_parcels as usize, n_pixels as usize, n_cov as usize);
        let transform: [f64; 6] = transform.try_into().expect("six values read");
        let raster = Self {
            grid: Grid::new(height, width, transform),
            n_parcels: n,
            labels: read_array(&mut input, height * width)?,
            offsets: read_array(&mut input, n + 1)?,
            pixels: read_array(&mut input, n_pixels)?,
            coverage: header[1] & FLAG_COVERAGE != 0,
            cov_offsets: read_array(&mut input, n + 1)?,
            cov_pixels: read_array(&mut input, n_cov)?,
            cov_fraction: read_array(&mut input, n_cov)?,
        };
        raster.check_consistent().map_err(|why| corrupt(&why))?;
        Ok(raster)
    }

    /// Checks the invariants documented on [`LabelRaster`]; says which one fails.
    pub fn check_consistent(&self) -> Result<(), String> {
        let n_cells = self.grid.len();
        if self.labels.len() != n_cells {
            return Err(format!("{} labels for {n_cells} cells", self.labels.len()));
        }
        if let Some(l) = self
            .labels
            .par_iter()
            .find_any(|&&l| l as usize > self.n_parcels)
        {
            return Err(format!("label {l} above n_parcels {}", self.n_parcels));
        }
        check_csr("offsets", &self.offsets, self.n_parcels, self.pixels.len())?;
        check_csr(
            "cov_offsets",
            &self.cov_offsets,
            self.n_parcels,
            self.cov_pixels.len(),
        )?;
        if self.cov_fraction.len() != self.cov_pixels.len() {
            return Err("cov_fraction and cov_pixels differ in length".into());
        }
        let bad_parcel = (0..self.n_parcels).into_par_iter().find_any(|&p| {
            let own = self.parcel_pixels(p);
            let (cells, _) = self.parcel_coverage(p);
            own.iter()
                .any(|&i| (i as usize) >= n_cells || self.labels[i as usize] != p as u32 + 1)
                || cells.last().is_some_and(|&c| c as usize >= n_cells)
                || cells.windows(2).any(|w| w[1] <= w[0])
        });
        if let Some(p) = bad_parcel {
            return Err(format!(
                "pixel or coverage lists of parcel {p} are inconsistent"
            ));
        }
        let labelled = self.labels.par_iter().filter(|&&l| l != NO_PARCEL).count();
        if labelled != self.pixels.len() {
            return Err(format!(
                "{labelled} labelled pixels but {} in the pixel lists",
                self.pixels.len()
            ));
        }
        if let Some(f) = self
            .cov_fraction
            .par_iter()
            .find_any(|&&f| !(f > 0.0 && f <= 1.0))
        {
            return Err(format!("coverage fraction {f} outside (0, 1]"));
        }
        Ok(())
    }
}

fn expected_len(height: u64, width: u64, n: u64, n_pixels: u64, n_cov: u64) -> Option<u64> {
    let cells = height.checked_mul(width)?;
    let offsets = n.checked_add(1)?.checked_mul(8)?;
    HEADER_BYTES
        .checked_add(cells.checked_mul(4)?)?
        .checked_add(offsets.checked_mul(2)?)?
        .checked_add(n_pixels.checked_mul(4)?)?
        .checked_add(n_cov.checked_mul(12)?)
}

fn check_csr(name: &str, offsets: &[u64], n: usize, len: usize) -> Result<(), String> {
    if offsets.len() != n + 1 || offsets[0] != 0 || offsets[n] != len as u64 {
        return Err(format!("{name} do not span 0..{len} over {n} parcels"));
    }
    if offsets.windows(2).any(|w| w[1] < w[0]) {
        return Err(format!("{name} decrease"));
    }
    Ok(())
}

fn corrupt(why: &str) -> LabelError {
    LabelError::CorruptCache(why.to_string())
}

fn read_exact(input: &mut impl Read, buf: &mut [u8]) -> Result<(), LabelError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => corrupt("file ends early (truncated)"),
        _ => LabelError::Io(e),
    })
}

/// A plain number stored little-endian. Implemented only for types without padding whose
/// every bit pattern is valid, so their memory can be read and written as bytes.
trait Plain: Copy + Default {
    /// Converts between native and little-endian order (the same swap both ways).
    fn swap_le(self) -> Self;
}

impl Plain for u32 {
    fn swap_le(self) -> Self {
        self.to_le()
    }
}

impl Plain for u64 {
    fn swap_le(self) -> Self {
        self.to_le()
    }
}

impl Plain for f64 {
    fn swap_le(self) -> Self {
        f64::from_bits(self.to_bits().to_le())
    }
}

fn as_bytes<T: Plain>(data: &[T]) -> &[u8] {
    // SAFETY: `Plain` types have no padding; the slice covers exactly `data`'s memory.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), std::mem::size_of_val(data)) }
}

fn as_bytes_mut<T: Plain>(data: &mut [T]) -> &mut [u8] {
    // SAFETY: as above, and every byte pattern is a valid `Plain` value.
    unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr().cast(), std::mem::size_of_val(data)) }
}

fn write_array<T: Plain>(out: &mut impl Write, data: &[T]) -> std::io::Result<()> {
    if cfg!(target_endian = "little") {
        out.write_all(as_bytes(data))
    } else {
        let swapped: Vec<T> = data.iter().map(|v| v.swap_le()).collect();
        out.write_all(as_bytes(&swapped))
    }
}

/// Reads `n` values straight into their final buffer (the file length was checked first, so
/// `n` is bounded by what is on disk).
fn read_array<T: Plain>(input: &mut impl Read, n: usize) -> Result<Vec<T>, LabelError> {
    let mut values = vec![T::default(); n];
    read_exact(input, as_bytes_mut(&mut values))?;
    if cfg!(target_endian = "big") {
        values.iter_mut().for_each(|v| *v = v.swap_le());
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label_build::build_label_raster;

    fn sample() -> LabelRaster {
        let coords = [
            3.0, 97.0, 47.0, 97.0, 33.0, 52.0, 3.0, 97.0, 20.0, 90.0, 80.0, 90.0, 80.0, 10.0, 20.0,
            90.0,
        ];
        let grid = Grid::new(10, 10, [10.0, 0.0, 0.0, 0.0, -10.0, 100.0]);
        build_label_raster(grid, &coords, &[0, 4, 8], &[0, 1, 2], &[0, 1, 2], true).unwrap()
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("label_cache_{}_{name}", std::process::id()))
    }

    #[test]
    fn save_then_load_round_trips() {
        let lr = sample();
        assert!(lr.has_coverage() && !lr.pixels.is_empty());
        let path = temp_path("roundtrip");
        lr.save(&path).unwrap();
        let back = LabelRaster::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back, lr);
    }

    #[test]
    fn truncated_and_corrupt_files_are_errors() {
        let path = temp_path("corrupt");
        sample().save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();

        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = LabelRaster::load(&path).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");

        let mut flipped = bytes.clone();
        flipped[HEADER_BYTES as usize] = 77; // first label far above n_parcels
        std::fs::write(&path, &flipped).unwrap();
        let err = LabelRaster::load(&path).unwrap_err();
        assert!(matches!(err, LabelError::CorruptCache(_)), "{err}");

        let mut huge = bytes.clone();
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // height
        std::fs::write(&path, &huge).unwrap();
        assert!(matches!(
            LabelRaster::load(&path),
            Err(LabelError::CorruptCache(_))
        ));

        std::fs::write(&path, b"hello").unwrap();
        assert!(matches!(
            LabelRaster::load(&path),
            Err(LabelError::CorruptCache(_))
        ));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(LabelRaster::load(&path), Err(LabelError::Io(_))));
    }
}
