//! The pyramid reader: tiled, striped and pyramidal TIFF, BigTIFF and Aperio SVS, read region
//! by region through any `Read + Seek` (a file natively, slices of a local `File` in the
//! browser), so a slide never has to be in memory whole.
//!
//! The `tiff` crate parses the directories and decompresses chunks (none, LZW, deflate,
//! PackBits, JPEG with shared JPEGTables); JPEG 2000 chunks (Aperio's and others') are read
//! raw and decoded by [`super::jpeg2000`]. This module picks the pyramid levels, turns every
//! colour layout into RGB and refuses what it cannot decode with a clear error.

use std::io::{Read, Seek, SeekFrom};

use image::RgbImage;
use serde::Serialize;
use tiff::decoder::ifd::Value;
use tiff::decoder::{Decoder, Limits};
use tiff::tags::Tag;

use super::colour::to_rgb;
use super::jpeg2000;
use super::resolution::{FileResolution, tiff_resolution};
use super::sub_ifd::ChainReader;
use crate::error::{CelnetError, Result};

/// Most directories looked at: slides have a handful; a loop of IFD pointers must end.
const MAX_DIRECTORIES: usize = 64;
/// Largest chunk (tile or strip) decoded, in pixels: a region is read chunk by chunk, so this
/// bounds the memory one chunk can take (a striped image written as one strip is refused).
pub const MAX_CHUNK_PIXELS: u64 = 16 << 20;
/// Largest region returned by one read, in pixels.
pub const MAX_REGION_PIXELS: u64 = 64 << 20;
/// Largest side a slide may declare (Camelyon slides are about 200,000 px wide).
const MAX_SIDE: u32 = 1 << 20;
/// Largest compressed chunk read raw, in bytes: more than an uncompressed chunk of
/// [`MAX_CHUNK_PIXELS`] RGB pixels takes.
const MAX_CHUNK_BYTES: u64 = 4 * MAX_CHUNK_PIXELS;

/// One resolution of the slide's pyramid.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Level {
    /// The chain of directories holding it: 0 for the file's main chain, `n` for the chain
    /// that starts at level 0's `n`-th SubIFD.
    pub chain: usize,
    /// Index of the TIFF directory (IFD) holding it in its chain.
    pub directory: usize,
    pub width: u32,
    pub height: u32,
    /// Chunk size: the tile, or the full width by the rows per strip.
    pub chunk_width: u32,
    pub chunk_height: u32,
    pub tiled: bool,
    /// Level 0's width over this level's width (1 for level 0).
    pub downsample: f64,
    /// The TIFF compression code.
    pub compression: u16,
}

/// A TIFF-family slide opened for reading regions.
pub struct TiffSlide<R: Read + Seek> {
    /// One decoder per chain of directories (see [`Level::chain`]), all reading one file.
    decoders: Vec<Decoder<ChainReader<R>>>,
    /// The directory each decoder is positioned at.
    current: Vec<usize>,
    levels: Vec<Level>,
    resolution: FileResolution,
    description: Option<String>,
    /// Where the current directory's chunks are, once a chunk has been read raw.
    chunk_table: Option<ChunkTable>,
}

/// The offsets and byte counts of one directory's chunks.
struct ChunkTable {
    /// The chain and the directory in it.
    directory: (usize, usize),
    offsets: Vec<u64>,
    counts: Vec<u64>,
}

impl<R: Read + Seek> std::fmt::Debug for TiffSlide<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiffSlide")
            .field("levels", &self.levels)
            .field("resolution", &self.resolution)
            .finish_non_exhaustive()
    }
}

fn tiff_error(e: tiff::TiffError) -> CelnetError {
    CelnetError::ImageDecode(format!("TIFF: {e}"))
}

/// The name of a compression code, for error messages.
fn compression_name(code: u16) -> String {
    match code {
        1 => "uncompressed".into(),
        5 => "LZW".into(),
        6 => "old-style JPEG".into(),
        JPEG => "JPEG".into(),
        8 | 32946 => "deflate".into(),
        32773 => "PackBits".into(),
        33003 | 33005 => format!("Aperio JPEG 2000 ({code})"),
        33004 | 34712 => format!("JPEG 2000 ({code})"),
        50000 => "Zstandard (50000)".into(),
        other => format!("code {other}"),
    }
}

/// Compressions the reader decodes.
fn supported(code: u16) -> bool {
    matches!(code, 1 | 5 | JPEG | 8 | 32946 | 32773) || jpeg2000::is_jpeg2000(code)
}

/// A decoder over one chain of directories, positioned at its first.
fn decoder<R: Read + Seek>(chain: ChainReader<R>) -> Result<Decoder<ChainReader<R>>> {
    Ok(Decoder::new(chain)
        .map_err(tiff_error)?
        .with_limits(Limits::default()))
}

/// The level the decoder's current directory, `index` of chain `chain`, would be (its
/// downsample still to be set), or an error for sizes no slide has.
fn describe<R: Read + Seek>(decoder: &mut Decoder<R>, chain: usize, index: usize) -> Result<Level> {
    let (width, height) = decoder.dimensions().map_err(tiff_error)?;
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(CelnetError::ImageDecode(format!(
            "TIFF directory {index} declares {width}x{height} px, which no slide has"
        )));
    }
    let compression = decoder
        .find_tag_unsigned::<u16>(Tag::Compression)
        .map_err(tiff_error)?
        .unwrap_or(1);
    let tiled = decoder
        .find_tag(Tag::TileWidth)
        .map_err(tiff_error)?
        .is_some();
    let (chunk_width, chunk_height) = decoder.chunk_dimensions();
    if chunk_width == 0 || chunk_height == 0 {
        return Err(CelnetError::ImageDecode(format!(
            "TIFF directory {index} has chunks of {chunk_width}x{chunk_height} px"
        )));
    }
    Ok(Level {
        chain,
        directory: index,
        width,
        height,
        chunk_width,
        chunk_height,
        tiled,
        downsample: 1.0,
        compression,
    })
}

impl<R: Read + Seek> TiffSlide<R> {
    /// Reads the directories of a TIFF, BigTIFF or SVS file: which are pyramid levels (level 0
    /// and every reduced copy of it with the same aspect; labels, macros and other images are
    /// skipped) and the pixel size level 0 declares.
    pub fn open(reader: R) -> Result<TiffSlide<R>> {
        let mut file = ChainReader::new(reader);
        let mut header = [0u8; 16];
        file.read_exact(&mut header)
            .map_err(|e| CelnetError::ImageDecode(format!("TIFF: {e}")))?;
        file.rewind()
            .map_err(|e| CelnetError::ImageDecode(format!("TIFF: {e}")))?;
        let mut decoders = vec![decoder(file)?];
        let mut directories = Vec::new();
        let mut description = None;
        let mut resolution = FileResolution::Unknown;
        let mut sub_ifds = Vec::new();
        for index in 0..MAX_DIRECTORIES {
            let main = &mut decoders[0];
            if index > 0 {
                if !main.more_images() {
                    break;
                }
                main.next_image().map_err(tiff_error)?;
            }
            let text = match main.find_tag(Tag::ImageDescription) {
                Ok(Some(Value::Ascii(text))) => Some(text),
                _ => None,
            };
            if index == 0 {
                resolution = tiff_resolution(main);
                description = text.clone();
                // Level 0's reduced copies in SubIFDs (OME-TIFF pyramids).
                if let Ok(Some(value)) = main.find_tag(Tag::SubIfd) {
                    sub_ifds = value.into_u64_vec().map_err(tiff_error)?;
                }
            }
            let label = text.as_deref().is_some_and(|t| {
                let t = t.to_ascii_lowercase();
                t.contains("label") || t.contains("macro")
            });
            directories.push((label, describe(main, 0, index)?));
        }
        sub_ifds.truncate(MAX_DIRECTORIES);
        for offset in sub_ifds {
            let chain = decoders[0].inner().starting_at(&header, offset);
            let mut sub = decoder(chain)?;
            let level = describe(&mut sub, decoders.len(), 0)?;
            directories.push((false, level));
            decoders.push(sub);
        }
        let (_, base) = directories[0].clone();
        let mut levels: Vec<Level> = directories
            .into_iter()
            .filter(|(label, level)| {
                let across = f64::from(base.width) / f64::from(level.width);
                let down = f64::from(base.height) / f64::from(level.height);
                // Same aspect within the rounding of the smaller side.
                let tolerance = across.max(down) / f64::from(level.width.min(level.height)) + 1e-9;
                let reduced = level.width <= base.width && level.height <= base.height;
                (level.chain, level.directory) == (0, 0)
                    || (!label && reduced && (across - down).abs() <= 2.0 * tolerance)
            })
            .map(|(_, mut level)| {
                level.downsample = f64::from(base.width) / f64::from(level.width);
                level
            })
            .collect();
        levels.sort_by(|a, b| a.downsample.total_cmp(&b.downsample));
        levels.dedup_by(|a, b| (a.downsample - b.downsample).abs() < 1e-6);
        decoders[0].seek_to_image(0).map_err(tiff_error)?;
        Ok(TiffSlide {
            current: vec![0; decoders.len()],
            decoders,
            levels,
            resolution,
            description,
            chunk_table: None,
        })
    }

    /// The whole file, for formats read whole after all.
    pub fn read_all(&mut self) -> Result<Vec<u8>> {
        self.decoders[0]
            .inner()
            .read_all()
            .map_err(|e| CelnetError::ImageDecode(format!("cannot read the file: {e}")))
    }

    /// Pyramid levels, finest first.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// Level `index`, or an error naming the levels there are.
    pub fn level(&self, index: usize) -> Result<&Level> {
        self.levels.get(index).ok_or_else(|| {
            CelnetError::InvalidParameter(format!(
                "level {index} does not exist; the slide has {}",
                self.levels.len()
            ))
        })
    }

    /// Level 0's size in pixels.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.levels[0].width, self.levels[0].height)
    }

    /// The pixel size level 0 declares.
    pub fn resolution(&self) -> FileResolution {
        self.resolution
    }

    /// Level 0's ImageDescription, if any (Aperio's carries the scanner and magnification).
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The container (Aperio SVS, OME-TIFF, BigTIFF when `big`, or TIFF) and level 0's
    /// compression, for people to read.
    pub fn format(&self, big: bool) -> String {
        let description = self.description.as_deref().unwrap_or("");
        let container = if description.starts_with("Aperio") {
            "Aperio SVS"
        } else if description.contains("<OME") {
            "OME-TIFF"
        } else if big {
            "BigTIFF"
        } else {
            "TIFF"
        };
        format!(
            "{container}, {}",
            compression_name(self.levels[0].compression)
        )
    }

    /// See [`level_for`].
    pub fn level_for(&self, mpp: f64, target_mpp: f64) -> usize {
        level_for(&self.levels, mpp, target_mpp)
    }

    /// A view of the `(x0, y0, x1, y1)` rectangle of level 0 at `out_width` x `out_height` px,
    /// read from the coarsest level that still has the detail (a viewer's tile).
    pub fn view(
        &mut self,
        rect: (f64, f64, f64, f64),
        out_width: u32,
        out_height: u32,
    ) -> Result<RgbImage> {
        let levels = self.levels.clone();
        super::pyramid_view(
            &levels,
            rect,
            out_width,
            out_height,
            |level, (x, y, w, h)| self.read_region(level, x, y, w, h),
        )
    }

    /// The pixels of the `width` x `height` rectangle at `(x, y)` of `level` (its own pixel
    /// coordinates), decoding only the chunks it touches.
    pub fn read_region(
        &mut self,
        level: usize,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    ) -> Result<RgbImage> {
        let info = self.level(level)?.clone();
        check_region(level, (info.width, info.height), (x, y, width, height))?;
        if !supported(info.compression) {
            return Err(CelnetError::ImageDecode(format!(
                "unsupported compression {} in level {level}; convert the slide to a tiled \
                 TIFF with JPEG, JPEG 2000, LZW or deflate (for example with vips or QuPath)",
                compression_name(info.compression)
            )));
        }
        if u64::from(info.chunk_width) * u64::from(info.chunk_height) > MAX_CHUNK_PIXELS {
            return Err(CelnetError::ImageDecode(format!(
                "level {level} is stored in chunks of {}x{} px, too large to read in parts; \
                 convert it to a tiled TIFF",
                info.chunk_width, info.chunk_height
            )));
        }
        let chain = info.chain;
        if self.current[chain] != info.directory {
            self.decoders[chain]
                .seek_to_image(info.directory)
                .map_err(tiff_error)?;
            self.current[chain] = info.directory;
        }
        let jpeg2000 = jpeg2000::is_jpeg2000(info.compression);
        // The `tiff` crate's colour type for the chunks it decodes itself.
        let colour = if jpeg2000 {
            None
        } else {
            Some(self.decoders[chain].colortype().map_err(tiff_error)?)
        };
        let planar = self.decoders[chain]
            .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
            .map_err(tiff_error)?;
        if planar.is_some_and(|p| p != 1) {
            return Err(CelnetError::ImageDecode(
                "planar (band-separated) TIFFs are not supported; convert the slide to \
                 interleaved RGB"
                    .into(),
            ));
        }
        let (cw, ch) = (info.chunk_width, info.chunk_height);
        let across = info.width.div_ceil(cw);
        let mut region = RgbImage::new(width, height);
        for cy in y / ch..=(y + height - 1) / ch {
            for cx in x / cw..=(x + width - 1) / cw {
                let index = cy * across + cx;
                // The chunk's pixels inside the image, and the row length of its RGB.
                let (dw, dh) = self.decoders[chain].chunk_data_dimensions(index);
                let (rgb, stride) = match colour {
                    Some(colour) => {
                        let data = self.decoders[chain].read_chunk(index).map_err(tiff_error)?;
                        (to_rgb(data, colour, dw, dh)?, dw)
                    }
                    None => {
                        let bytes = self.raw_chunk(chain, index, info.tiled)?;
                        let ycbcr = jpeg2000::holds_ycbcr(info.compression);
                        let chunk = jpeg2000::decode(&bytes, ycbcr, (cw, ch))?;
                        if chunk.width < dw || chunk.height < dh {
                            return Err(CelnetError::ImageDecode(format!(
                                "chunk {index} of level {level} is a {}x{} px JPEG 2000 image \
                                 where the TIFF's chunks are {cw}x{ch} px",
                                chunk.width, chunk.height
                            )));
                        }
                        let rgb = to_rgb(chunk.samples, chunk.colour, chunk.width, chunk.height)?;
                        (rgb, chunk.width)
                    }
                };
                paste(
                    &mut region,
                    (x, y),
                    &rgb,
                    stride,
                    (cx * cw, cy * ch, dw, dh),
                );
            }
        }
        Ok(region)
    }

    /// The compressed bytes of chunk `index` of `chain`'s current directory, for the codecs
    /// the `tiff` crate does not know.
    fn raw_chunk(&mut self, chain: usize, index: u32, tiled: bool) -> Result<Vec<u8>> {
        let directory = (chain, self.current[chain]);
        let decoder = &mut self.decoders[chain];
        if self
            .chunk_table
            .as_ref()
            .is_none_or(|t| t.directory != directory)
        {
            let (offsets, counts) = if tiled {
                (Tag::TileOffsets, Tag::TileByteCounts)
            } else {
                (Tag::StripOffsets, Tag::StripByteCounts)
            };
            self.chunk_table = Some(ChunkTable {
                directory,
                offsets: decoder.get_tag_u64_vec(offsets).map_err(tiff_error)?,
                counts: decoder.get_tag_u64_vec(counts).map_err(tiff_error)?,
            });
        }
        let table = self.chunk_table.as_ref().expect("filled above");
        let i = index as usize;
        let (Some(&offset), Some(&count)) = (table.offsets.get(i), table.counts.get(i)) else {
            return Err(CelnetError::ImageDecode(format!(
                "chunk {index} is missing from the TIFF's {} chunk offsets",
                table.offsets.len()
            )));
        };
        if count > MAX_CHUNK_BYTES {
            return Err(CelnetError::ImageDecode(format!(
                "chunk {index} declares {count} bytes; at most {MAX_CHUNK_BYTES} are read"
            )));
        }
        let short = |detail: String| {
            CelnetError::ImageDecode(format!(
                "chunk {index} ({count} bytes at {offset}) cannot be read: {detail}"
            ))
        };
        let reader = decoder.inner();
        reader
            .seek(SeekFrom::Start(offset))
            .map_err(|e| short(e.to_string()))?;
        // Read through `take`: a count past the end of a truncated file allocates only what
        // is there.
        let mut bytes = Vec::new();
        reader
            .take(count)
            .read_to_end(&mut bytes)
            .map_err(|e| short(e.to_string()))?;
        if bytes.len() as u64 != count {
            return Err(short(format!(
                "the file ends {} bytes into it",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

/// The coarsest of `levels` still at least as fine as `target_mpp` (within 5%), given level
/// 0's `mpp`: reading it and shrinking loses nothing the model could see.
pub fn level_for(levels: &[Level], mpp: f64, target_mpp: f64) -> usize {
    levels
        .iter()
        .rposition(|level| mpp * level.downsample <= target_mpp * 1.05)
        .unwrap_or(0)
}

/// Copies the part of a chunk inside a region of the same level: `region` starts at `(x, y)`;
/// the chunk's RGB is `stride` px wide and covers `(left, top, width, height)`.
pub fn paste(
    region: &mut RgbImage,
    (x, y): (u32, u32),
    chunk: &[u8],
    stride: u32,
    (left, top, width, height): (u32, u32, u32, u32),
) {
    let (x0, x1) = (x.max(left), (x + region.width()).min(left + width));
    let (y0, y1) = (y.max(top), (y + region.height()).min(top + height));
    let row_len = ((x1 - x0) * 3) as usize;
    let region_width = region.width();
    for py in y0..y1 {
        let from = (((py - top) * stride + (x0 - left)) * 3) as usize;
        let to = (((py - y) * region_width + (x0 - x)) * 3) as usize;
        (**region)[to..to + row_len].copy_from_slice(&chunk[from..from + row_len]);
    }
}

/// Refuses a `(x, y, width, height)` region of level `level` (`size` px) that is empty, not
/// inside it, or larger than [`MAX_REGION_PIXELS`].
pub fn check_region(
    level: usize,
    (level_width, level_height): (u32, u32),
    (x, y, width, height): (u32, u32, u32, u32),
) -> Result<()> {
    let inside = u64::from(x) + u64::from(width) <= u64::from(level_width)
        && u64::from(y) + u64::from(height) <= u64::from(level_height);
    if width == 0 || height == 0 || !inside {
        return Err(CelnetError::InvalidParameter(format!(
            "region {width}x{height} at ({x}, {y}) is not inside level {level} \
             ({level_width}x{level_height})"
        )));
    }
    if u64::from(width) * u64::from(height) > MAX_REGION_PIXELS {
        return Err(CelnetError::ImageTooLarge {
            width,
            height,
            max_pixels: MAX_REGION_PIXELS,
            what: "largest region read at once",
        });
    }
    Ok(())
}

/// TIFF's code for JPEG compression.
const JPEG: u16 = 7;

/// The whole pixels `(x, y, width, height)` covering the `(x0, y0, x1, y1)` rectangle (edges
/// rounded outwards), at least one pixel, inside a `width` x `height` image.
pub fn pixel_span(
    (x0, y0, x1, y1): (f64, f64, f64, f64),
    width: u32,
    height: u32,
) -> (u32, u32, u32, u32) {
    let left = (x0.floor().max(0.0) as u32).min(width - 1);
    let top = (y0.floor().max(0.0) as u32).min(height - 1);
    let right = (x1.ceil() as u32).clamp(left + 1, width);
    let bottom = (y1.ceil() as u32).clamp(top + 1, height);
    (left, top, right - left, bottom - top)
}
