//! Parcel polygons as ragged arrays (the layout of `shapely.to_ragged_array` for a
//! MultiPolygon array), checked once and mapped into the pixel space of a grid.

use std::fmt;

use crate::grid::Grid;

/// Why a label raster cannot be built, saved or loaded.
#[derive(Debug)]
pub enum LabelError {
    /// The transform has rotation or shear terms (`b` or `d` not zero).
    RotatedTransform([f64; 6]),
    /// The transform has a zero or non-finite pixel size or origin.
    DegenerateTransform([f64; 6]),
    /// More pixels than a `u32` pixel index can address.
    GridTooLarge { height: usize, width: usize },
    /// More parcels than a `u32` label can hold.
    TooManyParcels(usize),
    /// The ragged offsets do not describe a valid nesting of coordinates.
    InvalidOffsets(String),
    /// A coordinate of this parcel is NaN or infinite.
    NonFiniteCoordinate { parcel: usize },
    /// Reading or writing a cache file failed.
    Io(std::io::Error),
    /// A cache file is truncated, of another format or inconsistent.
    CorruptCache(String),
    /// The caller asked to stop (e.g. Ctrl-C) between chunks of parcels.
    Cancelled,
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RotatedTransform(t) => write!(
                f,
                "rotated or sheared grid transforms are not supported (transform {t:?})"
            ),
            Self::DegenerateTransform(t) => write!(
                f,
                "grid transform needs finite values and non-zero pixel sizes (transform {t:?})"
            ),
            Self::GridTooLarge { height, width } => write!(
                f,
                "grid {height}x{width} has more pixels than a u32 pixel index can address"
            ),
            Self::TooManyParcels(n) => write!(f, "{n} parcels do not fit in u32 labels"),
            Self::InvalidOffsets(why) => write!(f, "inconsistent polygon offsets: {why}"),
            Self::NonFiniteCoordinate { parcel } => {
                write!(f, "parcel {parcel} has a NaN or infinite coordinate")
            }
            Self::Io(e) => write!(f, "label raster file: {e}"),
            Self::CorruptCache(why) => write!(f, "corrupt label raster file: {why}"),
            Self::Cancelled => write!(f, "label raster build cancelled"),
        }
    }
}

impl std::error::Error for LabelError {}

impl From<std::io::Error> for LabelError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Polygons in the ragged layout of `shapely.to_ragged_array` for MultiPolygons.
///
/// `coords` holds x, y interleaved; ring `r` is points `ring_offsets[r]..ring_offsets[r + 1]`,
/// polygon `q` is rings `polygon_offsets[q]..polygon_offsets[q + 1]` (exterior first), geometry
/// (parcel) `p` is polygons `geometry_offsets[p]..geometry_offsets[p + 1]`.
#[derive(Clone, Copy, Debug)]
pub struct RaggedPolygons<'a> {
    pub coords: &'a [f64],
    pub ring_offsets: &'a [i64],
    pub polygon_offsets: &'a [i64],
    pub geometry_offsets: &'a [i64],
}

/// One edge of a ring in pixel space, stored with `y0 < y1`; a horizontal edge (`y0 == y1`)
/// keeps the ring's direction (from `(x0, y0)` to `(x1, y1)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Edge {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
    /// +1 or -1: the sign this edge's area contributions get so that exteriors add coverage
    /// and holes subtract it, whatever the orientation of the rings in the input.
    pub winding: f64,
}

impl<'a> RaggedPolygons<'a> {
    pub fn n_parcels(&self) -> usize {
        self.geometry_offsets.len().saturating_sub(1)
    }

    /// Checks that the offsets nest (each level starts at 0, never decreases, ends at the
    /// length of the level below) and that every coordinate is finite.
    pub fn validate(&self) -> Result<(), LabelError> {
        if !self.coords.len().is_multiple_of(2) {
            return Err(LabelError::InvalidOffsets(format!(
                "coords has an odd length {} (expected x, y pairs)",
                self.coords.len()
            )));
        }
        check_level("ring_offsets", self.ring_offsets, self.coords.len() / 2)?;
        check_level(
            "polygon_offsets",
            self.polygon_offsets,
            self.ring_offsets.len() - 1,
        )?;
        check_level(
            "geometry_offsets",
            self.geometry_offsets,
            self.polygon_offsets.len() - 1,
        )?;
        if let Some(i) = self.coords.iter().position(|v| !v.is_finite()) {
            return Err(LabelError::NonFiniteCoordinate {
                parcel: self.parcel_of_point(i / 2),
            });
        }
        Ok(())
    }

    /// The parcel owning point `point` (offsets must be valid).
    fn parcel_of_point(&self, point: usize) -> usize {
        let ring = self.ring_offsets.partition_point(|&o| o as usize <= point) - 1;
        let polygon = self
            .polygon_offsets
            .partition_point(|&o| o as usize <= ring)
            - 1;
        self.geometry_offsets
            .partition_point(|&o| o as usize <= polygon)
            - 1
    }

    /// The edges of parcel `p` in pixel space, exterior rings winding +1, holes -1 and
    /// horizontal edges 0 (see [`Edge::winding`]). Offsets must have been validated.
    pub fn parcel_edges(&self, p: usize, to_pixel: &PixelTransform) -> Vec<Edge> {
        let polygons = self.geometry_offsets[p] as usize..self.geometry_offsets[p + 1] as usize;
        let points = if polygons.is_empty() {
            0
        } else {
            let rings = self.polygon_offsets[polygons.start]..self.polygon_offsets[polygons.end];
            (self.ring_offsets[rings.end as usize] - self.ring_offsets[rings.start as usize])
                as usize
        };
        let mut edges = Vec::with_capacity(points);
        for q in polygons {
            let rings = self.polygon_offsets[q] as usize..self.polygon_offsets[q + 1] as usize;
            let first_ring = rings.start;
            for r in rings {
                let pts = self.ring_offsets[r] as usize..self.ring_offsets[r + 1] as usize;
                let ring: Vec<(f64, f64)> = pts
                    .map(|i| to_pixel.apply(self.coords[2 * i], self.coords[2 * i + 1]))
                    .collect();
                push_ring_edges(
                    &ring,
                    r == first_ring,
                    to_pixel.flips_orientation(),
                    &mut edges,
                );
            }
        }
        edges
    }
}

fn check_level(name: &str, offsets: &[i64], below: usize) -> Result<(), LabelError> {
    match (offsets.first(), offsets.last()) {
        (Some(&0), Some(&last)) if last as usize == below && last >= 0 => {}
        (None, _) => return Err(LabelError::InvalidOffsets(format!("{name} is empty"))),
        (Some(&first), Some(&last)) => {
            return Err(LabelError::InvalidOffsets(format!(
                "{name} must run from 0 to {below}, got {first}..{last}"
            )))
        }
        _ => unreachable!("first and last exist together"),
    }
    if let Some(i) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(LabelError::InvalidOffsets(format!(
            "{name} decreases at position {}",
            i + 1
        )));
    }
    Ok(())
}

/// Appends the edges of one ring (closing it if the input did not). Exterior rings are given
/// winding such that the area they enclose accumulates positively, holes negatively.
/// Horizontal edges are stored in the direction they have once the ring is clockwise in world
/// coordinates (`flipped`: pixel space mirrors the world), as GDAL sees rings when it decides
/// which horizontal edges to burn.
fn push_ring_edges(ring: &[(f64, f64)], exterior: bool, flipped: bool, edges: &mut Vec<Edge>) {
    if ring.len() < 2 {
        return;
    }
    // Shoelace sum (twice the signed area). The coverage accumulation counts an edge going
    // towards +y as adding to everything on its right, which gives -area for a ring of
    // positive shoelace area: flip such exteriors, and the other holes.
    let mut twice_area = 0.0;
    let n = ring.len();
    for i in 0..n {
        let (xa, ya) = ring[i];
        let (xb, yb) = ring[(i + 1) % n];
        twice_area += xa * yb - xb * ya;
    }
    let world_clockwise = (twice_area > 0.0) == flipped;
    let orientation = if (twice_area > 0.0) == exterior {
        -1.0
    } else {
        1.0
    };
    for i in 0..n {
        let (xa, ya) = ring[i];
        let (xb, yb) = ring[(i + 1) % n];
        let edge = if ya == yb {
            // Horizontal: encloses no area, but the pixel-centre rule burns some of them.
            let (x0, x1) = if world_clockwise { (xa, xb) } else { (xb, xa) };
            Edge {
                x0,
                y0: ya,
                x1,
                y1: yb,
                winding: 0.0,
            }
        } else if ya < yb {
            Edge {
                x0: xa,
                y0: ya,
                x1: xb,
                y1: yb,
                winding: orientation,
            }
        } else {
            Edge {
                x0: xb,
                y0: yb,
                x1: xa,
                y1: ya,
                winding: -orientation,
            }
        };
        edges.push(edge);
    }
}

/// World to pixel coordinates of a north-up grid, as GDAL computes them when rasterizing
/// (`GDALInvGeoTransform` without rotation: `col = -c/a + x * (1/a)`), so that ties on pixel
/// centres fall the same way as in `rasterio.features.rasterize`.
#[derive(Clone, Copy, Debug)]
pub struct PixelTransform {
    col0: f64,
    col_per_x: f64,
    row0: f64,
    row_per_y: f64,
}

impl PixelTransform {
    pub fn new(grid: &Grid) -> Result<Self, LabelError> {
        let [a, b, c, d, e, f] = grid.transform;
        if grid.transform.iter().any(|v| !v.is_finite()) || a == 0.0 || e == 0.0 {
            return Err(LabelError::DegenerateTransform(grid.transform));
        }
        if b != 0.0 || d != 0.0 {
            return Err(LabelError::RotatedTransform(grid.transform));
        }
        Ok(Self {
            col0: -c / a,
            col_per_x: 1.0 / a,
            row0: -f / e,
            row_per_y: 1.0 / e,
        })
    }

    /// Whether pixel space mirrors the world (true for north-up grids: rows grow southwards).
    pub fn flips_orientation(&self) -> bool {
        (self.col_per_x < 0.0) != (self.row_per_y < 0.0)
    }

    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.col0 + x * self.col_per_x,
            self.row0 + y * self.row_per_y,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> (Vec<f64>, Vec<i64>, Vec<i64>, Vec<i64>) {
        let coords = vec![0.0, 0.0, 2.0, 0.0, 2.0, 2.0, 0.0, 2.0, 0.0, 0.0];
        (coords, vec![0, 5], vec![0, 1], vec![0, 1])
    }

    #[test]
    fn valid_offsets_pass() {
        let (c, r, p, g) = square();
        let polys = RaggedPolygons {
            coords: &c,
            ring_offsets: &r,
            polygon_offsets: &p,
            geometry_offsets: &g,
        };
        polys.validate().unwrap();
        assert_eq!(polys.n_parcels(), 1);
    }

    #[test]
    fn offsets_past_the_end_are_rejected() {
        let (c, _, p, g) = square();
        let r = vec![0, 6];
        let polys = RaggedPolygons {
            coords: &c,
            ring_offsets: &r,
            polygon_offsets: &p,
            geometry_offsets: &g,
        };
        let err = polys.validate().unwrap_err();
        assert!(err.to_string().contains("ring_offsets"), "{err}");
    }

    #[test]
    fn nan_coordinate_names_its_parcel() {
        let (mut c, _, _, _) = square();
        c.extend_from_slice(&[0.0, 0.0, 1.0, f64::NAN, 1.0, 1.0, 0.0, 0.0]);
        let r = vec![0, 5, 9];
        let p = vec![0, 1, 2];
        let g = vec![0, 1, 2];
        let polys = RaggedPolygons {
            coords: &c,
            ring_offsets: &r,
            polygon_offsets: &p,
            geometry_offsets: &g,
        };
        match polys.validate() {
            Err(LabelError::NonFiniteCoordinate { parcel }) => assert_eq!(parcel, 1),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rotated_transform_is_rejected() {
        let grid = Grid::new(2, 2, [1.0, 0.1, 0.0, 0.0, -1.0, 2.0]);
        assert!(matches!(
            PixelTransform::new(&grid),
            Err(LabelError::RotatedTransform(_))
        ));
    }

    #[test]
    fn pixel_transform_maps_corners() {
        let grid = Grid::new(2, 2, [10.0, 0.0, 100.0, 0.0, -10.0, 200.0]);
        let t = PixelTransform::new(&grid).unwrap();
        assert_eq!(t.apply(100.0, 200.0), (0.0, 0.0));
        assert_eq!(t.apply(120.0, 180.0), (2.0, 2.0));
    }
}
