//! Turning maps into pictures: colour-mapped maps, evidence overlays and mask outlines.

use image::{Rgb, RgbImage};

use super::maps::Map;
use super::regions::Mask;

/// Colour of region outlines: a cyan that stands out on inferno and on H&E.
pub const OUTLINE_COLOUR: [u8; 3] = [0, 255, 255];

/// Default opacity of the evidence overlay (the CLI's overlay.png and the page's slider).
pub const OVERLAY_OPACITY: f32 = 0.6;

/// A [0, 1] map in the inferno colour map (dark = no evidence, bright yellow = strong).
pub fn colormap(map: &Map) -> RgbImage {
    RgbImage::from_fn(map.width as u32, map.height as u32, |x, y| {
        Rgb(color(map.get(x as usize, y as usize)))
    })
}

/// The inferno colour of a value, clamped to [0, 1].
pub fn color(value: f32) -> [u8; 3] {
    let v = if value.is_finite() { value } else { 0.0 };
    let c = colorous::INFERNO.eval_continuous(f64::from(v.clamp(0.0, 1.0)));
    [c.r, c.g, c.b]
}

/// The input with the map blended over it: `opacity * map value` of the colour, so weak
/// evidence leaves the tissue visible.
pub fn overlay(input: &RgbImage, map: &Map, opacity: f32) -> RgbImage {
    assert_eq!(
        (input.width() as usize, input.height() as usize),
        (map.width, map.height)
    );
    // The colour of the last value seen: neighbours often share a value (a slide's heatmap
    // holds one per window), and the colour map's spline is most of the work.
    let mut last = (f32::NAN, [0; 3]);
    RgbImage::from_fn(input.width(), input.height(), |x, y| {
        let v = map.get(x as usize, y as usize).clamp(0.0, 1.0);
        let a = opacity.clamp(0.0, 1.0) * v;
        if v.to_bits() != last.0.to_bits() {
            last = (v, color(v));
        }
        let c = last.1;
        let p = input.get_pixel(x, y).0;
        Rgb(std::array::from_fn(|i| {
            (f32::from(p[i]) * (1.0 - a) + f32::from(c[i]) * a).round() as u8
        }))
    })
}

/// The evidence overlay: `map` over the input at `opacity`, with the boundary of `mask` on top.
pub fn evidence_overlay(input: &RgbImage, map: &Map, mask: &Mask, opacity: f32) -> RgbImage {
    let mut image = overlay(input, map, opacity);
    outline(&mut image, mask, OUTLINE_COLOUR);
    image
}

/// Draws the boundary pixels of `mask` onto `image` in `colour`.
pub fn outline(image: &mut RgbImage, mask: &Mask, colour: [u8; 3]) {
    for (i, on) in boundary(mask).into_iter().enumerate() {
        if on {
            let (x, y) = (i % mask.width, i / mask.width);
            image.put_pixel(x as u32, y as u32, Rgb(colour));
        }
    }
}

/// Mask pixels with at least one 4-neighbour outside the mask (or outside the image).
pub fn boundary(mask: &Mask) -> Vec<bool> {
    let (w, h) = (mask.width as isize, mask.height as isize);
    let inside =
        |x: isize, y: isize| x >= 0 && y >= 0 && x < w && y < h && mask.data[(y * w + x) as usize];
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| {
            inside(x, y)
                && [(-1, 0), (1, 0), (0, -1), (0, 1)]
                    .iter()
                    .any(|(dx, dy)| !inside(x + dx, y + dy))
        })
        .collect()
}

/// The map in the colour map as opaque RGBA bytes (for a canvas `ImageData`).
pub fn colormap_rgba(map: &Map) -> Vec<u8> {
    map.data
        .iter()
        .flat_map(|&v| {
            let [r, g, b] = color(v);
            [r, g, b, 255]
        })
        .collect()
}

/// The colour map from 0 to 1 as 256 opaque RGBA entries, for a legend.
pub fn legend_rgba() -> Vec<u8> {
    colormap_rgba(&Map::new(
        256,
        1,
        (0..256).map(|i| i as f32 / 255.0).collect(),
    ))
}

/// The map as a translucent heat layer: the colour of each value with alpha equal to the value.
/// Drawn over the input at opacity `o`, it gives exactly [`overlay`] with opacity `o`, so a page
/// can move an opacity slider without recomputing anything.
pub fn heat_rgba(map: &Map) -> Vec<u8> {
    map.data
        .iter()
        .flat_map(|&v| {
            let v = if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            };
            let [r, g, b] = color(v);
            [r, g, b, (v * 255.0).round() as u8]
        })
        .collect()
}

/// The mask's boundary in `colour` on a transparent RGBA layer.
pub fn outline_rgba(mask: &Mask, colour: [u8; 3]) -> Vec<u8> {
    boundary(mask)
        .into_iter()
        .flat_map(|on| {
            if on {
                [colour[0], colour[1], colour[2], 255]
            } else {
                [0; 4]
            }
        })
        .collect()
}

/// The mask as a black-and-white picture.
pub fn mask_image(mask: &Mask) -> RgbImage {
    RgbImage::from_fn(mask.width as u32, mask.height as u32, |x, y| {
        let on = mask.data[y as usize * mask.width + x as usize];
        Rgb([if on { 255 } else { 0 }; 3])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colormap_ends() {
        assert_eq!(color(0.0), [0, 0, 4]);
        assert!(color(1.0)[0] > 240 && color(1.0)[1] > 240);
        assert_eq!(color(f32::NAN), color(0.0));
    }

    #[test]
    fn overlay_with_zero_evidence_is_the_input() {
        let input = RgbImage::from_pixel(4, 4, Rgb([10, 200, 30]));
        let out = overlay(&input, &Map::zeros(4, 4), 1.0);
        assert_eq!(out, input);
    }

    #[test]
    fn heat_layer_composited_at_an_opacity_is_the_overlay() {
        let input = RgbImage::from_fn(8, 8, |x, y| Rgb([(x * 30) as u8, (y * 30) as u8, 90]));
        let map = Map::new(8, 8, (0..64).map(|i| i as f32 / 63.0).collect());
        let opacity = 0.6;
        let expected = overlay(&input, &map, opacity);
        let heat = heat_rgba(&map);
        for (i, p) in input.pixels().enumerate() {
            // Canvas "source-over" with globalAlpha: out = src * a + dst * (1 - a).
            let a = opacity * f32::from(heat[4 * i + 3]) / 255.0;
            let want = expected.as_raw()[3 * i..3 * i + 3].to_vec();
            for c in 0..3 {
                let got = f32::from(heat[4 * i + c]) * a + f32::from(p.0[c]) * (1.0 - a);
                assert!(
                    (got - f32::from(want[c])).abs() <= 1.5,
                    "pixel {i}: {got} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn outline_layer_matches_the_drawn_outline() {
        let mask = Mask {
            width: 6,
            height: 5,
            data: (0..30).map(|i| (i % 6) > 1 && (i / 6) < 4).collect(),
        };
        let mut drawn = RgbImage::new(6, 5);
        outline(&mut drawn, &mask, [0, 255, 0]);
        let layer = outline_rgba(&mask, [0, 255, 0]);
        for (i, p) in drawn.pixels().enumerate() {
            assert_eq!(layer[4 * i + 3] == 255, p.0 == [0, 255, 0], "pixel {i}");
        }
    }

    #[test]
    fn outline_marks_only_the_border() {
        let mut data = vec![false; 25];
        for y in 1..4 {
            for x in 1..4 {
                data[y * 5 + x] = true;
            }
        }
        let mask = Mask {
            width: 5,
            height: 5,
            data,
        };
        let mut image = RgbImage::new(5, 5);
        outline(&mut image, &mask, [255, 0, 0]);
        assert_eq!(image.get_pixel(2, 2).0, [0, 0, 0]);
        assert_eq!(image.get_pixel(1, 1).0, [255, 0, 0]);
        assert_eq!(image.get_pixel(0, 0).0, [0, 0, 0]);
    }
}
