//! The raster grid a kernel works on: size and affine geotransform.

/// A north-up (or rotated) raster grid.
///
/// `transform` is in rasterio / `affine` order `[a, b, c, d, e, f]`:
/// `x = a * col + b * row + c`, `y = d * col + e * row + f`, for pixel corner coordinates
/// (`col + 0.5, row + 0.5` is a pixel centre).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grid {
    pub height: usize,
    pub width: usize,
    pub transform: [f64; 6],
}

impl Grid {
    pub fn new(height: usize, width: usize, transform: [f64; 6]) -> Self {
        Self {
            height,
            width,
            transform,
        }
    }

    /// Number of pixels, `height * width`.
    pub fn len(&self) -> usize {
        self.height * self.width
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
