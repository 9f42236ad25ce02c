//! Resampling RGB images: the one place pixels are resized, for thumbnails, tissue masks,
//! inputs brought to the model's scale and slide tiles read at another level's size.
//!
//! `fast_image_resize` does the work: the same separable convolution as the `image` crate's
//! resize (a filter whose support widens with the reduction, so shrinking averages every source
//! pixel instead of aliasing), in fixed point with SIMD, natively and in wasm. Its results are
//! within one level of the `image` crate's and about ten times faster; a slide's thumbnail had
//! spent most of its time in the `image` crate's resize.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

/// How source pixels are combined into each resized pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// The nearest source pixel: for views that shrink a lot and need no averaging.
    Nearest,
    /// A triangle (bilinear) filter, widened when shrinking.
    Triangle,
}

/// `image` resized to `width` x `height` with `filter`; a copy when the size is the same.
pub fn resize(image: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    let mut resized = RgbImage::new(width, height);
    let algorithm = match filter {
        Filter::Nearest => ResizeAlg::Nearest,
        Filter::Triangle => ResizeAlg::Convolution(FilterType::Bilinear),
    };
    Resizer::new()
        .resize(
            image,
            &mut resized,
            &ResizeOptions::new().resize_alg(algorithm),
        )
        .expect("an RGB image resized whole into an RGB image");
    resized
}

/// [`resize`] taking its image, which it returns as it is when the size is the same.
pub fn fit(image: RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    if image.dimensions() == (width, height) {
        image
    } else {
        resize(&image, width, height, filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::FilterType as ImageFilter;

    /// A smooth gradient with a sharp edge, so that both averaging and edges are compared.
    fn pattern(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            let edge = if x * 3 > width { 200 } else { 40 };
            image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, edge])
        })
    }

    #[test]
    fn the_triangle_filter_matches_the_image_crates_within_one_level() {
        let source = pattern(301, 217);
        for (width, height) in [(96, 64), (40, 217), (350, 300), (7, 5), (1, 1)] {
            let ours = resize(&source, width, height, Filter::Triangle);
            let theirs = image::imageops::resize(&source, width, height, ImageFilter::Triangle);
            assert_eq!(ours.dimensions(), (width, height));
            let worst = ours
                .as_raw()
                .iter()
                .zip(theirs.as_raw())
                .map(|(&a, &b)| a.abs_diff(b))
                .max()
                .unwrap();
            assert!(worst <= 1, "{width}x{height}: {worst} levels apart");
        }
    }

    #[test]
    fn shrinking_averages_every_source_pixel() {
        // A one-pixel checkerboard shrunk 4x is grey, not a sample of black or white.
        let board = RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([if (x + y) % 2 == 0 { 255 } else { 0 }; 3])
        });
        let small = resize(&board, 16, 16, Filter::Triangle);
        assert!(small.as_raw().iter().all(|&v| (120..=135).contains(&v)));
    }

    #[test]
    fn the_same_size_is_a_copy_and_nearest_picks_source_pixels() {
        let source = pattern(50, 30);
        assert_eq!(resize(&source, 50, 30, Filter::Triangle), source);
        assert_eq!(fit(source.clone(), 50, 30, Filter::Triangle), source);
        let nearest = resize(&source, 25, 15, Filter::Nearest);
        assert!(nearest.pixels().all(|p| source.pixels().any(|q| q == p)));
    }
}
