//! Turning maps into pictures: colour-mapped maps, evidence overlays and mask outlines.

use image::{Rgb, RgbImage};

use crate::maps::Map;
use crate::regions::Mask;

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
    RgbImage::from_fn(input.width(), input.height(), |x, y| {
        let v = map.get(x as usize, y as usize).clamp(0.0, 1.0);
        let a = opacity.clamp(0.0, 1.0) * v;
        let c = color(v);
        let p = input.get_pixel(x, y).0;
        Rgb(std::array::from_fn(|i| {
            (f32::from(p[i]) * (1.0 - a) + f32::from(c[i]) * a).round() as u8
        }))
    })
}

/// Draws the boundary pixels of `mask` onto `image` in `colour`.
pub fn outline(image: &mut RgbImage, mask: &Mask, colour: [u8; 3]) {
    let (w, h) = (mask.width, mask.height);
    let inside = |x: isize, y: isize| {
        x >= 0
            && y >= 0
            && (x as usize) < w
            && (y as usize) < h
            && mask.data[y as usize * w + x as usize]
    };
    for y in 0..h as isize {
        for x in 0..w as isize {
            let boundary = inside(x, y)
                && [(-1, 0), (1, 0), (0, -1), (0, 1)]
                    .iter()
                    .any(|(dx, dy)| !inside(x + dx, y + dy));
            if boundary {
                image.put_pixel(x as u32, y as u32, Rgb(colour));
            }
        }
    }
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
