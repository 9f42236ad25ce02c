//! Stain colour in HED space: colour deconvolution into haematoxylin, eosin and DAB optical
//! densities (Ruifrok and Johnston, 2001), and the random stain shifts that imitate another
//! lab's staining and scanner (HED jitter, Tellez et al., 2018).
//!
//! By the Beer-Lambert law a pixel's optical density `OD = -ln(I / I0)` per RGB channel is a
//! sum of the stains' densities times their colour vectors, so `OD = hed · M` with `M`'s rows
//! the stain vectors; jitter scales and shifts each stain's density (`hed' = α hed + β`) and
//! maps back to RGB. With `α = 1` and `β = 0` the round trip returns the input.

use rand::{Rng, RngExt};

/// Stain vectors (optical density per R, G, B) of haematoxylin, eosin and DAB, as in
/// scikit-image's `rgb_from_hed`.
const RGB_FROM_HED: [[f32; 3]; 3] = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]];

/// Light transmitted through no stain, one more than the brightest 8-bit value so that black
/// pixels keep a finite optical density.
const INCIDENT: f32 = 256.0;

/// The strength of a stain shift: each stain's density is scaled by `α ∈ [1 - scale,
/// 1 + scale]` and shifted by `β ∈ [-shift, shift]` (natural-log optical density).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StainJitter {
    pub scale: f32,
    pub shift: f32,
}

impl StainJitter {
    /// No shift.
    pub const NONE: StainJitter = StainJitter {
        scale: 0.0,
        shift: 0.0,
    };

    /// The stain-shift benchmark's severities 0 (none) to 3 (strong): densities scaled by up to
    /// ± 0.15, 0.3, 0.5 and shifted by up to half that (the densities of stained tissue are
    /// about 0.2 to 1). At 1 a slightly paler or darker stain, at 2 the tints that tell two labs
    /// apart, at 3 stains far off any protocol.
    pub const SEVERITIES: [StainJitter; 4] = [
        StainJitter::NONE,
        StainJitter {
            scale: 0.15,
            shift: 0.075,
        },
        StainJitter {
            scale: 0.3,
            shift: 0.15,
        },
        StainJitter {
            scale: 0.5,
            shift: 0.25,
        },
    ];

    /// The training augmentation of strength `strength` (`celnet train --stain-jitter`):
    /// densities scaled by up to `± strength` and shifted by up to `± strength / 4`.
    pub const fn of(strength: f32) -> StainJitter {
        StainJitter {
            scale: strength,
            shift: strength / 4.0,
        }
    }

    /// Whether this jitter changes nothing.
    pub fn is_none(&self) -> bool {
        self.scale == 0.0 && self.shift == 0.0
    }

    /// One random shift of this strength. Draws six numbers from `rng`.
    pub fn draw(&self, rng: &mut dyn Rng) -> StainShift {
        let mut shift = StainShift::IDENTITY;
        for stain in 0..3 {
            shift.scale[stain] = 1.0 + rng.random_range(-self.scale..=self.scale);
            shift.offset[stain] = rng.random_range(-self.shift..=self.shift);
        }
        shift
    }
}

/// One stain shift: `hed' = scale * hed + offset` per stain (H, E, DAB).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StainShift {
    pub scale: [f32; 3],
    pub offset: [f32; 3],
}

impl StainShift {
    /// The shift that changes nothing.
    pub const IDENTITY: StainShift = StainShift {
        scale: [1.0; 3],
        offset: [0.0; 3],
    };

    /// The shift as one affine map of RGB optical densities, `od' = od · A + b` with
    /// `A = M⁻¹ diag(scale) M` and `b = offset · M`, so a pixel costs a table look-up per
    /// channel, a 3x3 product and three exponentials.
    pub fn od_map(&self) -> OdMap {
        let hed_from_rgb = invert(RGB_FROM_HED);
        let mut matrix = [[0.0f32; 3]; 3];
        for (i, row) in matrix.iter_mut().enumerate() {
            for (j, value) in row.iter_mut().enumerate() {
                *value = (0..3)
                    .map(|k| hed_from_rgb[i][k] * self.scale[k] * RGB_FROM_HED[k][j])
                    .sum();
            }
        }
        let bias =
            std::array::from_fn(|j| (0..3).map(|k| self.offset[k] * RGB_FROM_HED[k][j]).sum());
        OdMap {
            matrix,
            bias,
            density: std::array::from_fn(|v| optical_density(v as u8)),
        }
    }

    /// Applies the shift to interleaved 8-bit RGB pixels in place (rounded to 8 bits).
    pub fn apply(&self, rgb: &mut [u8]) {
        let mut unit = vec![0.0f32; rgb.len()];
        self.od_map().apply_unit(rgb, &mut unit);
        for (value, shifted) in rgb.iter_mut().zip(unit) {
            *value = (shifted * 255.0).round() as u8;
        }
    }
}

/// A [`StainShift`] ready to apply to pixels.
#[derive(Clone, Debug)]
pub struct OdMap {
    matrix: [[f32; 3]; 3],
    bias: [f32; 3],
    /// Optical densities of the 256 8-bit values.
    density: [f32; 256],
}

impl OdMap {
    /// Applies the shift to interleaved 8-bit RGB pixels, giving intensities in [0, 1].
    ///
    /// # Panics
    /// If `rgb` and `out` differ in length or do not hold whole RGB triples.
    pub fn apply_unit(&self, rgb: &[u8], out: &mut [f32]) {
        assert_eq!(rgb.len(), out.len());
        assert_eq!(rgb.len() % 3, 0, "pixels are RGB triples");
        let (m, bias) = (&self.matrix, &self.bias);
        for (pixel, target) in rgb.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
            let od = [
                self.density[pixel[0] as usize],
                self.density[pixel[1] as usize],
                self.density[pixel[2] as usize],
            ];
            for (j, value) in target.iter_mut().enumerate() {
                let shifted = od[0] * m[0][j] + od[1] * m[1][j] + od[2] * m[2][j] + bias[j];
                let intensity = INCIDENT * (-shifted).exp() - 1.0;
                *value = (intensity / 255.0).clamp(0.0, 1.0);
            }
        }
    }
}

/// Haematoxylin, eosin and DAB densities of an 8-bit RGB pixel.
pub fn rgb_to_hed(rgb: [u8; 3]) -> [f32; 3] {
    let od = rgb.map(optical_density);
    let hed_from_rgb = invert(RGB_FROM_HED);
    std::array::from_fn(|k| (0..3).map(|j| od[j] * hed_from_rgb[j][k]).sum())
}

/// The RGB intensities (0 to 255, not rounded or clamped) of stain densities.
pub fn hed_to_rgb(hed: [f32; 3]) -> [f32; 3] {
    std::array::from_fn(|j| {
        let od: f32 = (0..3).map(|k| hed[k] * RGB_FROM_HED[k][j]).sum();
        INCIDENT * (-od).exp() - 1.0
    })
}

fn optical_density(value: u8) -> f32 {
    -((f32::from(value) + 1.0) / INCIDENT).ln()
}

/// The inverse of a 3x3 matrix (by its adjugate); the stain matrix is well conditioned.
fn invert(m: [[f32; 3]; 3]) -> [[f32; 3]; 3] {
    let cofactor = |r: usize, c: usize| {
        let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
        let (c1, c2) = ((c + 1) % 3, (c + 2) % 3);
        m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]
    };
    let determinant: f32 = (0..3).map(|c| m[0][c] * cofactor(0, c)).sum();
    std::array::from_fn(|r| std::array::from_fn(|c| cofactor(c, r) / determinant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Every 8-bit colour on a coarse grid, with the extremes.
    fn colours() -> Vec<u8> {
        let levels = [0u8, 1, 17, 64, 128, 191, 230, 254, 255];
        let mut rgb = Vec::new();
        for r in levels {
            for g in levels {
                for b in levels {
                    rgb.extend([r, g, b]);
                }
            }
        }
        rgb
    }

    #[test]
    fn stain_matrix_inverse_is_an_inverse() {
        let inverse = invert(RGB_FROM_HED);
        for (i, row) in RGB_FROM_HED.iter().enumerate() {
            let product: [f32; 3] =
                std::array::from_fn(|j| (0..3).map(|k| row[k] * inverse[k][j]).sum());
            let mut identity_row = [0.0; 3];
            identity_row[i] = 1.0;
            for (value, expected) in product.iter().zip(identity_row) {
                assert!((value - expected).abs() < 1e-5, "row {i}: {product:?}");
            }
        }
    }

    #[test]
    fn hed_round_trip_returns_the_input() {
        for pixel in colours().chunks_exact(3) {
            let rgb = [pixel[0], pixel[1], pixel[2]];
            let back = hed_to_rgb(rgb_to_hed(rgb));
            for c in 0..3 {
                assert!(
                    (back[c] - f32::from(rgb[c])).abs() < 0.5,
                    "{rgb:?} came back as {back:?}"
                );
            }
        }
    }

    #[test]
    fn severity_zero_returns_the_input_within_one_level() {
        let rgb = colours();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let shift = StainJitter::SEVERITIES[0].draw(&mut rng);
        assert_eq!(shift, StainShift::IDENTITY);
        let mut unit = vec![0.0; rgb.len()];
        shift.od_map().apply_unit(&rgb, &mut unit);
        for (&value, &shifted) in rgb.iter().zip(&unit) {
            assert!((shifted - f32::from(value) / 255.0).abs() <= 1.0 / 255.0);
        }
        let mut copy = rgb.clone();
        shift.apply(&mut copy);
        assert_eq!(copy, rgb);
    }

    #[test]
    fn a_haematoxylin_shift_moves_only_along_the_haematoxylin_vector() {
        // Doubling the haematoxylin density of a pixel that holds only haematoxylin doubles its
        // optical density in every channel, and leaves eosin and DAB at zero.
        let hed = [0.4, 0.0, 0.0];
        let rgb = hed_to_rgb(hed).map(|v| v.round().clamp(0.0, 255.0) as u8);
        let measured = rgb_to_hed(rgb);
        let shift = StainShift {
            scale: [2.0, 1.0, 1.0],
            offset: [0.0; 3],
        };
        let mut unit = [0.0f32; 3];
        shift.od_map().apply_unit(&rgb, &mut unit);
        let shifted = rgb_to_hed(unit.map(|v| (v * 255.0).round() as u8));
        assert!((shifted[0] - 2.0 * measured[0]).abs() < 0.02, "{shifted:?}");
        assert!(
            shifted[1].abs() < 0.02 && shifted[2].abs() < 0.02,
            "{shifted:?}"
        );
    }

    #[test]
    fn stronger_severities_move_colours_further() {
        let rgb = colours();
        let mean_change = |jitter: StainJitter| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            let mut total = 0.0;
            for _ in 0..20 {
                let mut unit = vec![0.0; rgb.len()];
                jitter.draw(&mut rng).od_map().apply_unit(&rgb, &mut unit);
                total += rgb
                    .iter()
                    .zip(&unit)
                    .map(|(&v, &s)| (f32::from(v) / 255.0 - s).abs())
                    .sum::<f32>();
            }
            total / (20 * rgb.len()) as f32
        };
        let changes: Vec<f32> = StainJitter::SEVERITIES
            .into_iter()
            .map(mean_change)
            .collect();
        // Severity 0 moves values (0 to 1) by rounding error only.
        assert!(changes[0] < 1e-6, "{changes:?}");
        assert!(changes.windows(2).all(|w| w[0] < w[1]), "{changes:?}");
    }
}
