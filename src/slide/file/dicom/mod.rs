//! DICOM whole-slide images (VL Whole Slide Microscopy Image Storage), read through any
//! `Read + Seek` as the TIFF reader reads: each file's header up to its pixel data, then one
//! frame (tile) at a time by its offset, so neither the files nor a level is ever in memory
//! whole.
//!
//! A slide is a set of files, one per pyramid level (labels, overviews and thumbnails are
//! skipped), or one file. The reader is our own rather than `dicom-rs`'s: `dicom-object` reads a
//! file's whole data set into memory (a sparse slide's per-frame positions run to megabytes, and
//! its pixel data is the whole slide) and brings the standard's data dictionary into the page's
//! wasm, while a slide needs some twenty attributes, two nested sequences and the frames'
//! offsets.

mod header;

use std::io::{Read, Seek, SeekFrom};

use ::tiff::ColorType;
use ::tiff::decoder::DecodingResult;
use image::RgbImage;

use super::colour::to_rgb;
use super::jpeg2000;
use super::tiff::{check_region, paste};
use crate::error::{CelnetError, Result};
pub use header::FrameCodec;
use header::{
    Header, ITEM, MAX_FRAMES, Parser, SEQUENCE_END, UNDEFINED, dicom_error, io_error, numbers,
    read_header, transfer_syntax,
};

/// Largest frame (tile) side.
const MAX_TILE_SIDE: u32 = 4096;
/// Largest compressed frame read.
const MAX_FRAME_BYTES: u64 = 64 << 20;
/// Largest side a slide may declare, as for TIFF.
const MAX_SIDE: u32 = 1 << 20;

/// Where a level's frames are in its file.
#[derive(Clone, Debug)]
enum Frames {
    /// Uncompressed: frame `i` is `bytes` long at `start + i * bytes`.
    Native { start: u64, bytes: u64 },
    /// Encapsulated: each frame's fragments, `(offset of the first item, end)` in the file.
    Encapsulated(Vec<(u64, u64)>),
}

/// One level of a DICOM slide: one file.
#[derive(Clone, Debug)]
pub struct DicomLevel {
    /// Index of the file among those given.
    pub file: usize,
    pub width: u32,
    pub height: u32,
    pub tile_width: u32,
    pub tile_height: u32,
    pub codec: FrameCodec,
    pub transfer_syntax: String,
    photometric: String,
    samples: u16,
    frames: Frames,
    /// For each tile, row by row, its frame (None: a sparse level's missing tile, glass).
    tiles: Vec<Option<u32>>,
    /// Level 0's pixel size in µm, from this file.
    pub mpp: Option<f64>,
    series: String,
}

/// Opens one file as a level, or `None` for a file that is not one (a label, an overview, a
/// thumbnail).
pub fn read_level<R: Read + Seek>(reader: &mut R, file: usize) -> Result<Option<DicomLevel>> {
    let header = read_header(reader)?;
    const WSI: &str = "1.2.840.10008.5.1.4.1.1.77.1.6";
    if !header.sop_class.is_empty() && header.sop_class != WSI {
        return Err(dicom_error(format!(
            "the file is not a whole-slide image (SOP class {})",
            header.sop_class
        )));
    }
    if !header.image_type.iter().any(|t| t == "VOLUME") {
        return Ok(None);
    }
    let (codec, _) = transfer_syntax(&header.transfer_syntax)?;
    let (tile_width, tile_height) = (header.columns, header.rows);
    let (width, height) = (header.total_columns, header.total_rows);
    let sides = 1..=MAX_TILE_SIDE;
    if !sides.contains(&tile_width) || !sides.contains(&tile_height) {
        return Err(dicom_error(format!(
            "frames of {tile_width}x{tile_height} px, which no slide has"
        )));
    }
    if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
        return Err(dicom_error(format!(
            "a total pixel matrix of {width}x{height} px, which no slide has"
        )));
    }
    if header.frames == 0 || header.frames > MAX_FRAMES {
        return Err(dicom_error(format!(
            "{} frames, which no slide has",
            header.frames
        )));
    }
    match (header.samples_per_pixel, header.photometric.as_str()) {
        (3, "RGB" | "YBR_FULL" | "YBR_FULL_422" | "YBR_ICT" | "YBR_RCT") | (1, "MONOCHROME2") => {}
        (samples, photometric) => {
            return Err(dicom_error(format!(
                "{samples} samples a pixel in {photometric} are not supported; RGB, YCbCr and \
                 greyscale are"
            )));
        }
    }
    let (across, down) = (width.div_ceil(tile_width), height.div_ceil(tile_height));
    let tile_count = u64::from(across) * u64::from(down);
    let tiles: Vec<Option<u32>> = if header.sparse {
        let mut tiles = vec![None; tile_count as usize];
        for (frame, &(column, row)) in header.positions.iter().enumerate() {
            let (x, y) = (column - 1, row - 1);
            let (tw, th) = (i64::from(tile_width), i64::from(tile_height));
            let inside = x >= 0 && y >= 0 && x % tw == 0 && y % th == 0;
            let (cx, cy) = (x / tw, y / th);
            if inside
                && cx < i64::from(across)
                && cy < i64::from(down)
                && (frame as u64) < header.frames
            {
                // Only the first focal plane and optical path: a frame already placed stays.
                let tile = &mut tiles[(cy * i64::from(across) + cx) as usize];
                tile.get_or_insert(frame as u32);
            }
        }
        tiles
    } else {
        if header.frames < tile_count {
            return Err(dicom_error(format!(
                "{} frames for a TILED_FULL matrix of {across}x{down} tiles",
                header.frames
            )));
        }
        (0..tile_count as u32).map(Some).collect()
    };
    let Some((start, length)) = header.pixel_data else {
        return Err(dicom_error("the file has no pixel data"));
    };
    let frames = if length == UNDEFINED {
        if codec == FrameCodec::Native {
            return Err(dicom_error(
                "encapsulated pixel data in an uncompressed transfer syntax",
            ));
        }
        Frames::Encapsulated(fragments(reader, start, &header)?)
    } else {
        if codec != FrameCodec::Native {
            return Err(dicom_error("compressed frames that are not encapsulated"));
        }
        if header.bits_allocated != 8 || header.planar != 0 {
            return Err(dicom_error(format!(
                "uncompressed frames of {} bits a sample{} are not supported; 8-bit \
                 interleaved are",
                header.bits_allocated,
                if header.planar != 0 { ", by plane" } else { "" }
            )));
        }
        let bytes =
            u64::from(tile_width) * u64::from(tile_height) * u64::from(header.samples_per_pixel);
        if u64::from(length) < bytes * header.frames {
            return Err(dicom_error(format!(
                "{length} bytes of pixel data for {} frames of {bytes} bytes",
                header.frames
            )));
        }
        Frames::Native { start, bytes }
    };
    let mpp = header
        .pixel_spacing
        .map(|(_, column)| column * 1000.0)
        .or_else(|| {
            header
                .imaged_volume_width
                .map(|mm| mm * 1000.0 / f64::from(width))
        })
        .filter(|mpp| mpp.is_finite() && *mpp > 0.0);
    Ok(Some(DicomLevel {
        file,
        width,
        height,
        tile_width,
        tile_height,
        codec,
        transfer_syntax: header.transfer_syntax,
        photometric: header.photometric,
        samples: header.samples_per_pixel,
        frames,
        tiles,
        mpp,
        series: header.series,
    }))
}

/// Each frame's fragments in encapsulated pixel data whose value starts at `start`: from the
/// extended offset table, the basic one, or, where both are empty, by walking the fragments
/// (one fragment a frame).
fn fragments<R: Read + Seek>(
    reader: &mut R,
    start: u64,
    header: &Header,
) -> Result<Vec<(u64, u64)>> {
    let mut parser = Parser::items_at(reader, start)?;
    let table = parser.element()?;
    if table.tag != ITEM || table.length == UNDEFINED {
        return Err(dicom_error(
            "encapsulated pixel data without its offset table item",
        ));
    }
    let frames = header.frames as usize;
    let basic: Vec<u64> = if table.length > 0 {
        let bytes = parser.value(table.length)?;
        numbers::<4>(&bytes)
            .map(|b| u64::from(u32::from_le_bytes(b)))
            .collect()
    } else {
        Vec::new()
    };
    let first = start + 8 + u64::from(table.length);
    let end_of_file = parser.reader.seek(SeekFrom::End(0)).map_err(io_error)?;
    let offsets: Vec<u64> = if !header.extended_offsets.is_empty() {
        header.extended_offsets.clone()
    } else if !basic.is_empty() {
        basic
    } else {
        // No table: one item per frame, found by walking the items.
        let mut offsets = Vec::with_capacity(frames);
        let mut at = first;
        parser.reader.seek(SeekFrom::Start(at)).map_err(io_error)?;
        loop {
            let item = parser.element()?;
            if item.tag == SEQUENCE_END {
                break;
            }
            if item.tag != ITEM || item.length == UNDEFINED {
                return Err(dicom_error("a damaged fragment in the pixel data"));
            }
            if offsets.len() >= frames {
                return Err(dicom_error(format!(
                    "more fragments than the {frames} frames and no offset table to tell \
                     which belong together"
                )));
            }
            offsets.push(at - first);
            at += 8 + u64::from(item.length);
            parser.skip(item.length)?;
        }
        offsets
    };
    if offsets.len() != frames {
        return Err(dicom_error(format!(
            "an offset table of {} entries for {frames} frames",
            offsets.len()
        )));
    }
    let mut spans = Vec::with_capacity(frames);
    for (i, &offset) in offsets.iter().enumerate() {
        let from = first.checked_add(offset).filter(|&at| at < end_of_file);
        // A frame's fragments run to the next frame's (the extended table's lengths are not
        // needed, and writers disagree on whether they count the item headers).
        let to = match offsets.get(i + 1) {
            Some(&next) => first.checked_add(next),
            None => Some(end_of_file),
        };
        match (from, to) {
            (Some(from), Some(to)) if from < to && to <= end_of_file => spans.push((from, to)),
            _ => {
                return Err(dicom_error(format!(
                    "frame {i}'s offset points past the end of the file or before the frame \
                     before it"
                )));
            }
        }
    }
    Ok(spans)
}

impl DicomLevel {
    /// The compressed (or raw) bytes of frame `frame`.
    fn frame_bytes<R: Read + Seek>(&self, reader: &mut R, frame: u32) -> Result<Vec<u8>> {
        match &self.frames {
            Frames::Native { start, bytes } => {
                reader
                    .seek(SeekFrom::Start(start + u64::from(frame) * bytes))
                    .map_err(io_error)?;
                let mut data = Vec::new();
                reader
                    .take(*bytes)
                    .read_to_end(&mut data)
                    .map_err(io_error)?;
                if data.len() as u64 != *bytes {
                    return Err(dicom_error(format!("frame {frame} is cut short")));
                }
                Ok(data)
            }
            Frames::Encapsulated(spans) => {
                let (from, to) = spans[frame as usize];
                if to - from > MAX_FRAME_BYTES {
                    return Err(dicom_error(format!(
                        "frame {frame} is {} bytes; at most {MAX_FRAME_BYTES} are read",
                        to - from
                    )));
                }
                let mut parser = Parser::items_at(reader, from)?;
                // The frame's fragments, concatenated.
                let mut data = Vec::new();
                while parser.position()? < to {
                    let item = parser.element()?;
                    if item.tag == SEQUENCE_END {
                        break;
                    }
                    if item.tag != ITEM || item.length == UNDEFINED {
                        return Err(dicom_error(format!("frame {frame} is damaged")));
                    }
                    let left = to.saturating_sub(parser.position()?);
                    if u64::from(item.length) > left {
                        return Err(dicom_error(format!("frame {frame} is cut short")));
                    }
                    data.extend(parser.value(item.length)?);
                }
                Ok(data)
            }
        }
    }

    /// Frame `frame` as RGB, `tile_width` x `tile_height` px.
    pub fn decode_frame<R: Read + Seek>(&self, reader: &mut R, frame: u32) -> Result<Vec<u8>> {
        let data = self.frame_bytes(reader, frame)?;
        let (w, h) = (self.tile_width, self.tile_height);
        let ycbcr = matches!(self.photometric.as_str(), "YBR_FULL" | "YBR_FULL_422");
        let rgb = match self.codec {
            FrameCodec::Native => {
                let colour = match (self.samples, ycbcr) {
                    (1, _) => ColorType::Gray(8),
                    (_, true) => ColorType::YCbCr(8),
                    (_, false) => ColorType::RGB(8),
                };
                to_rgb(DecodingResult::U8(data), colour, w, h)?
            }
            FrameCodec::Jpeg => {
                let image =
                    jpeg_frame(&data).map_err(|e| dicom_error(format!("frame {frame}: {e}")))?;
                if image.dimensions() != (w, h) {
                    return Err(dicom_error(format!(
                        "frame {frame} is {}x{} px where the frames are {w}x{h}",
                        image.width(),
                        image.height()
                    )));
                }
                image.into_raw()
            }
            FrameCodec::Jpeg2000 => {
                let chunk = jpeg2000::decode(&data, ycbcr, (w, h))
                    .map_err(|e| dicom_error(format!("frame {frame}: {e}")))?;
                if chunk.width < w || chunk.height < h {
                    return Err(dicom_error(format!(
                        "frame {frame} is {}x{} px where the frames are {w}x{h}",
                        chunk.width, chunk.height
                    )));
                }
                let rgb = to_rgb(chunk.samples, chunk.colour, chunk.width, chunk.height)?;
                crop_rows(rgb, chunk.width, w, h)
            }
        };
        Ok(rgb)
    }

    /// The frame holding tile `(column, row)`, `None` for glass (a sparse level's gap).
    pub fn frame_at(&self, column: u32, row: u32) -> Option<u32> {
        let across = self.width.div_ceil(self.tile_width);
        self.tiles
            .get((row * across + column) as usize)
            .copied()
            .flatten()
    }
}

/// A JPEG frame as RGB. Strict: a damaged frame is an error, not a grey-filled tile.
fn jpeg_frame(data: &[u8]) -> std::result::Result<RgbImage, String> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default().set_strict_mode(true);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(data), options);
    decoder.decode_headers().map_err(|e| e.to_string())?;
    let header = "a JPEG without a frame header";
    // The stream's own markers say whether its three components are YCbCr (JFIF, or nothing
    // said) or RGB (Adobe's transform 0, components named R, G, B), as libjpeg reads them:
    // writers label both kinds RGB in the data set.
    match decoder.info().ok_or(header)?.components {
        1 | 3 => {}
        n => return Err(format!("a JPEG of {n} components")),
    }
    decoder.set_options(options.jpeg_set_out_colorspace(ColorSpace::RGB));
    let samples = decoder.decode().map_err(|e| e.to_string())?;
    let (width, height) = decoder.dimensions().ok_or(header)?;
    RgbImage::from_raw(width as u32, height as u32, samples)
        .ok_or_else(|| "a JPEG whose pixels do not fill its frame".to_string())
}

/// The first `height` rows of `width` px of an RGB image `stride` px wide.
fn crop_rows(rgb: Vec<u8>, stride: u32, width: u32, height: u32) -> Vec<u8> {
    if stride == width {
        let mut rgb = rgb;
        rgb.truncate((width * height * 3) as usize);
        return rgb;
    }
    rgb.chunks((stride * 3) as usize)
        .take(height as usize)
        .flat_map(|row| &row[..(width * 3) as usize])
        .copied()
        .collect()
}

/// Reads the `width` x `height` rectangle at `(x, y)` of `level` from its file.
pub fn read_region<R: Read + Seek>(
    level: &DicomLevel,
    reader: &mut R,
    (x, y, width, height): (u32, u32, u32, u32),
) -> Result<RgbImage> {
    let (tw, th) = (level.tile_width, level.tile_height);
    let mut region = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    for ty in y / th..=(y + height - 1) / th {
        for tx in x / tw..=(x + width - 1) / tw {
            let Some(frame) = level.frame_at(tx, ty) else {
                continue;
            };
            let rgb = level.decode_frame(reader, frame)?;
            paste(&mut region, (x, y), &rgb, tw, (tx * tw, ty * th, tw, th));
        }
    }
    Ok(region)
}

/// The name of a transfer syntax the reader decodes.
pub fn codec_name(level: &DicomLevel) -> String {
    let name = match level.codec {
        FrameCodec::Native => "uncompressed",
        FrameCodec::Jpeg => "JPEG",
        FrameCodec::Jpeg2000 => "JPEG 2000",
    };
    format!("{name} ({})", level.transfer_syntax)
}

/// A DICOM slide: its level files, finest first.
pub struct DicomSlide<R> {
    files: Vec<R>,
    levels: Vec<DicomLevel>,
}

impl<R: Read + Seek> DicomSlide<R> {
    /// Reads the headers of a slide's files (any order; labels, overviews and thumbnails are
    /// skipped). Files of more than one series are refused: they are more than one slide.
    pub fn open(mut files: Vec<R>) -> Result<DicomSlide<R>> {
        let mut levels = Vec::new();
        let count = files.len();
        for (index, file) in files.iter_mut().enumerate() {
            // With several files, the error says which (the caller knows their names).
            let level = read_level(file, index).map_err(|e| match count {
                1 => e,
                _ => CelnetError::InFile {
                    path: format!("file {} of {count}", index + 1),
                    source: Box::new(e),
                },
            })?;
            levels.extend(level);
        }
        if levels.is_empty() {
            return Err(dicom_error(format!(
                "no pyramid level among the {} file(s): only labels, overviews or thumbnails",
                files.len()
            )));
        }
        let series = levels[0].series.clone();
        if levels.iter().any(|l| l.series != series) {
            return Err(dicom_error(
                "the files belong to more than one series (slide); give the files of one slide",
            ));
        }
        levels.sort_by(|a, b| b.width.cmp(&a.width).then(b.height.cmp(&a.height)));
        // Further focal planes or optical paths of a level, in files of their own, are skipped.
        levels.dedup_by(|a, b| (a.width, a.height) == (b.width, b.height));
        Ok(DicomSlide { files, levels })
    }

    /// The levels, finest first.
    pub fn levels(&self) -> &[DicomLevel] {
        &self.levels
    }

    /// The pixel size level 0 declares, µm/px.
    pub fn mpp(&self) -> Option<f64> {
        let base = &self.levels[0];
        base.mpp.or_else(|| {
            // A coarser level's spacing, scaled to level 0's pixels.
            self.levels.iter().find_map(|l| {
                l.mpp
                    .map(|mpp| mpp * f64::from(l.width) / f64::from(base.width))
            })
        })
    }

    /// The pixels of the `width` x `height` rectangle at `(x, y)` of `level` (its own pixel
    /// coordinates), decoding only the frames it touches; glass where a sparse level has none.
    pub fn read_region(&mut self, level: usize, rect: (u32, u32, u32, u32)) -> Result<RgbImage> {
        let Some(info) = self.levels.get(level) else {
            return Err(CelnetError::InvalidParameter(format!(
                "level {level} does not exist; the slide has {}",
                self.levels.len()
            )));
        };
        check_region(level, (info.width, info.height), rect)?;
        read_region(info, &mut self.files[info.file], rect)
    }
}
