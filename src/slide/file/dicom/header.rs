//! A DICOM file's data set read up to its pixel data: the attributes a whole-slide level needs,
//! from explicit or implicit VR little endian, following only the sequences that hold them and
//! seeking past every other value.

use std::io::{Read, Seek, SeekFrom};

use crate::error::{CelnetError, Result};

/// The most frames one level may declare.
pub(super) const MAX_FRAMES: u64 = 4 << 20;
/// Largest value read into memory (the extended offset table: 8 bytes a frame).
const MAX_VALUE: u32 = 8 * MAX_FRAMES as u32;
/// Deepest nesting of sequences followed, and most elements read in one file's header.
const MAX_DEPTH: usize = 8;
const MAX_ELEMENTS: usize = 1 << 22;

/// The transfer syntaxes of the frames this reader decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameCodec {
    /// Explicit or implicit VR little endian: frames stored as they are.
    Native,
    /// JPEG baseline (1.2.840.10008.1.2.4.50) or extended (.51).
    Jpeg,
    /// JPEG 2000 (.90 lossless, .91).
    Jpeg2000,
}

pub(super) fn dicom_error(message: impl Into<String>) -> CelnetError {
    CelnetError::ImageDecode(format!("DICOM: {}", message.into()))
}

pub(super) fn io_error(e: std::io::Error) -> CelnetError {
    dicom_error(format!("the file cannot be read: {e}"))
}

/// The transfer syntax's codec and whether its data set is explicit VR, or an error naming it.
pub(super) fn transfer_syntax(uid: &str) -> Result<(FrameCodec, bool)> {
    Ok(match uid {
        "1.2.840.10008.1.2" => (FrameCodec::Native, false),
        "1.2.840.10008.1.2.1" => (FrameCodec::Native, true),
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" => (FrameCodec::Jpeg, true),
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => (FrameCodec::Jpeg2000, true),
        other => {
            let name = match other {
                "1.2.840.10008.1.2.2" => "explicit VR big endian",
                "1.2.840.10008.1.2.1.99" => "deflated explicit VR little endian",
                "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => "lossless JPEG",
                "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "JPEG-LS",
                "1.2.840.10008.1.2.4.201"
                | "1.2.840.10008.1.2.4.202"
                | "1.2.840.10008.1.2.4.203" => "High-Throughput JPEG 2000",
                "1.2.840.10008.1.2.4.110"
                | "1.2.840.10008.1.2.4.111"
                | "1.2.840.10008.1.2.4.112" => "JPEG XL",
                "1.2.840.10008.1.2.5" => "RLE",
                _ => "an unknown transfer syntax",
            };
            return Err(dicom_error(format!(
                "frames in {name} ({other}) are not supported; JPEG baseline, JPEG 2000 and \
                 uncompressed frames are (convert the slide, for example with wsidicomizer)"
            )));
        }
    })
}

/// A tag as (group, element).
pub(super) type Tag = (u16, u16);

const PIXEL_DATA: Tag = (0x7FE0, 0x0010);
pub(super) const ITEM: Tag = (0xFFFE, 0xE000);
const ITEM_END: Tag = (0xFFFE, 0xE00D);
pub(super) const SEQUENCE_END: Tag = (0xFFFE, 0xE0DD);
pub(super) const UNDEFINED: u32 = u32::MAX;

/// The attributes of one file the slide needs, as read from its header.
#[derive(Clone, Debug, Default)]
pub(super) struct Header {
    pub(super) transfer_syntax: String,
    pub(super) sop_class: String,
    pub(super) series: String,
    pub(super) image_type: Vec<String>,
    pub(super) samples_per_pixel: u16,
    pub(super) photometric: String,
    pub(super) planar: u16,
    pub(super) bits_allocated: u16,
    pub(super) frames: u64,
    pub(super) rows: u32,
    pub(super) columns: u32,
    pub(super) total_columns: u32,
    pub(super) total_rows: u32,
    /// Pixel spacing in mm: (between rows, between columns).
    pub(super) pixel_spacing: Option<(f64, f64)>,
    pub(super) imaged_volume_width: Option<f64>,
    pub(super) sparse: bool,
    /// The extended offset table, where given.
    pub(super) extended_offsets: Vec<u64>,
    /// Each frame's (column, row) in the total pixel matrix, 1-based, for TILED_SPARSE.
    pub(super) positions: Vec<(i64, i64)>,
    /// Offset of the pixel data's value and its length (`UNDEFINED` when encapsulated).
    pub(super) pixel_data: Option<(u64, u32)>,
}

/// Reads elements of a data set, explicit or implicit VR little endian.
pub(super) struct Parser<'a, R> {
    pub(super) reader: &'a mut R,
    explicit: bool,
    elements: usize,
}

/// One element's header: its tag and value length.
pub(super) struct Element {
    pub(super) tag: Tag,
    pub(super) length: u32,
}

impl<'a, R: Read + Seek> Parser<'a, R> {
    /// A parser of the items of encapsulated pixel data, at `offset` (items have no VR).
    pub(super) fn items_at(reader: &'a mut R, offset: u64) -> Result<Parser<'a, R>> {
        reader.seek(SeekFrom::Start(offset)).map_err(io_error)?;
        Ok(Parser {
            reader,
            explicit: true,
            elements: 0,
        })
    }

    fn u16(&mut self) -> Result<u16> {
        let mut b = [0; 2];
        self.reader.read_exact(&mut b).map_err(io_error)?;
        Ok(u16::from_le_bytes(b))
    }

    fn u32(&mut self) -> Result<u32> {
        let mut b = [0; 4];
        self.reader.read_exact(&mut b).map_err(io_error)?;
        Ok(u32::from_le_bytes(b))
    }

    pub(super) fn position(&mut self) -> Result<u64> {
        self.reader.stream_position().map_err(io_error)
    }

    pub(super) fn skip(&mut self, bytes: u32) -> Result<()> {
        self.reader
            .seek(SeekFrom::Current(i64::from(bytes)))
            .map_err(io_error)?;
        Ok(())
    }

    /// The next element's header; item and delimitation tags have no VR in any syntax.
    pub(super) fn element(&mut self) -> Result<Element> {
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return Err(dicom_error("the header holds too many elements"));
        }
        let tag = (self.u16()?, self.u16()?);
        if tag.0 == 0xFFFE || !self.explicit {
            return Ok(Element {
                tag,
                length: self.u32()?,
            });
        }
        let mut vr = [0; 2];
        self.reader.read_exact(&mut vr).map_err(io_error)?;
        let long = matches!(
            &vr,
            b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"UC" | b"UN" | b"UR" | b"UT"
        );
        let length = if long {
            self.u16()?;
            self.u32()?
        } else {
            u32::from(self.u16()?)
        };
        Ok(Element { tag, length })
    }

    pub(super) fn value(&mut self, length: u32) -> Result<Vec<u8>> {
        if length == UNDEFINED || length > MAX_VALUE {
            return Err(dicom_error(format!("a value of {length} bytes")));
        }
        let mut bytes = Vec::new();
        (&mut *self.reader)
            .take(u64::from(length))
            .read_to_end(&mut bytes)
            .map_err(io_error)?;
        if bytes.len() != length as usize {
            return Err(dicom_error("the file ends inside its header"));
        }
        Ok(bytes)
    }

    /// Skips a value of undefined length: the items of a sequence, up to its delimiter.
    fn skip_undefined(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(dicom_error("sequences nested too deep"));
        }
        loop {
            let element = self.element()?;
            match element.tag {
                SEQUENCE_END | ITEM_END => return Ok(()),
                _ if element.length == UNDEFINED => self.skip_undefined(depth + 1)?,
                _ => self.skip(element.length)?,
            }
        }
    }

    /// Where a value of `length` bytes starting here ends (`None`: undefined, delimited).
    fn end_of(&mut self, length: u32) -> Result<Option<u64>> {
        Ok(match length {
            UNDEFINED => None,
            length => Some(self.position()? + u64::from(length)),
        })
    }

    /// Whether the reader is at or past `end`.
    fn reached(&mut self, end: Option<u64>) -> bool {
        end.is_some_and(|end| self.position().is_ok_and(|p| p >= end))
    }

    /// The items of a sequence of `length` bytes (or undefined), each read by `item`.
    fn items(
        &mut self,
        length: u32,
        depth: usize,
        mut item: impl FnMut(&mut Self, u32, usize) -> Result<()>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(dicom_error("sequences nested too deep"));
        }
        let end = self.end_of(length)?;
        loop {
            if self.reached(end) {
                return Ok(());
            }
            let element = self.element()?;
            match element.tag {
                SEQUENCE_END => return Ok(()),
                ITEM => item(self, element.length, depth + 1)?,
                other => {
                    return Err(dicom_error(format!(
                        "a sequence holds ({:04X},{:04X}) where an item belongs",
                        other.0, other.1
                    )));
                }
            }
        }
    }

    /// The elements of one item of `length` bytes (or undefined), each given to `element`
    /// with the value still to be read or skipped.
    fn item_elements(
        &mut self,
        length: u32,
        depth: usize,
        mut each: impl FnMut(&mut Self, Element, usize) -> Result<()>,
    ) -> Result<()> {
        let end = self.end_of(length)?;
        loop {
            if self.reached(end) {
                return Ok(());
            }
            let element = self.element()?;
            if element.tag == ITEM_END {
                return Ok(());
            }
            each(self, element, depth)?;
        }
    }

    /// Skips the value of an element not needed.
    fn skip_value(&mut self, element: &Element, depth: usize) -> Result<()> {
        if element.length == UNDEFINED {
            self.skip_undefined(depth + 1)
        } else {
            self.skip(element.length)
        }
    }

    /// The first of the binary numbers of `N` bytes a value holds.
    fn binary<const N: usize>(&mut self, length: u32) -> Result<[u8; N]> {
        let bytes = self.value(length)?;
        numbers::<N>(&bytes)
            .next()
            .ok_or_else(|| dicom_error(format!("a {length}-byte value where {N} bytes belong")))
    }

    fn us(&mut self, length: u32) -> Result<u16> {
        Ok(u16::from_le_bytes(self.binary(length)?))
    }

    fn ul(&mut self, length: u32) -> Result<u32> {
        Ok(u32::from_le_bytes(self.binary(length)?))
    }

    fn text(&mut self, length: u32) -> Result<String> {
        let bytes = self.value(length)?;
        Ok(String::from_utf8_lossy(&bytes)
            .trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .to_string())
    }

    fn number<T: std::str::FromStr>(&mut self, length: u32) -> Result<Option<T>> {
        Ok(self
            .text(length)?
            .split('\\')
            .next()
            .and_then(|v| v.trim().parse().ok()))
    }
}

/// The binary value `bytes` as little-endian numbers of `N` bytes.
pub(super) fn numbers<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes.as_chunks::<N>().0.iter().copied()
}

/// Reads one file's header, up to the start of its pixel data.
pub(super) fn read_header<R: Read + Seek>(reader: &mut R) -> Result<Header> {
    let mut preamble = [0u8; 132];
    reader.rewind().map_err(io_error)?;
    if reader.read_exact(&mut preamble).is_err() || &preamble[128..] != b"DICM" {
        return Err(dicom_error("not a DICOM file (no DICM after the preamble)"));
    }
    let mut header = Header {
        samples_per_pixel: 1,
        ..Header::default()
    };
    // The file meta information: always explicit VR little endian.
    let mut parser = Parser {
        reader,
        explicit: true,
        elements: 0,
    };
    loop {
        let at = parser.position()?;
        let group = parser.u16()?;
        parser.reader.seek(SeekFrom::Start(at)).map_err(io_error)?;
        if group != 0x0002 {
            break;
        }
        let element = parser.element()?;
        match element.tag {
            (0x0002, 0x0010) => header.transfer_syntax = parser.text(element.length)?,
            _ => parser.skip_value(&element, 0)?,
        }
    }
    let (_, explicit) = transfer_syntax(&header.transfer_syntax)?;
    parser.explicit = explicit;
    // A file with no pixel data ends in this loop; it is refused by the caller.
    while let Ok(element) = parser.element() {
        let length = element.length;
        match element.tag {
            (0x0008, 0x0008) => {
                header.image_type = parser
                    .text(length)?
                    .split('\\')
                    .map(|s| s.trim().to_ascii_uppercase())
                    .collect();
            }
            (0x0008, 0x0016) => header.sop_class = parser.text(length)?,
            (0x0020, 0x000E) => header.series = parser.text(length)?,
            (0x0020, 0x9311) => header.sparse = parser.text(length)? == "TILED_SPARSE",
            (0x0028, 0x0002) => header.samples_per_pixel = parser.us(length)?,
            (0x0028, 0x0004) => header.photometric = parser.text(length)?,
            (0x0028, 0x0006) => header.planar = parser.us(length)?,
            (0x0028, 0x0008) => header.frames = parser.number(length)?.unwrap_or(0),
            (0x0028, 0x0010) => header.rows = u32::from(parser.us(length)?),
            (0x0028, 0x0011) => header.columns = u32::from(parser.us(length)?),
            (0x0028, 0x0100) => header.bits_allocated = parser.us(length)?,
            (0x0048, 0x0001) => {
                let bytes = parser.value(length)?;
                header.imaged_volume_width = numbers::<4>(&bytes)
                    .next()
                    .map(|b| f64::from(f32::from_le_bytes(b)));
            }
            (0x0048, 0x0006) => header.total_columns = parser.ul(length)?,
            (0x0048, 0x0007) => header.total_rows = parser.ul(length)?,
            (0x5200, 0x9229) => shared_groups(&mut parser, length, &mut header)?,
            (0x5200, 0x9230) => per_frame_groups(&mut parser, length, &mut header)?,
            (0x7FE0, 0x0001) => {
                let bytes = parser.value(length)?;
                header.extended_offsets = numbers::<8>(&bytes).map(u64::from_le_bytes).collect();
            }
            PIXEL_DATA => {
                header.pixel_data = Some((parser.position()?, length));
                break;
            }
            _ => parser.skip_value(&element, 0)?,
        }
    }
    Ok(header)
}

/// The shared functional groups: the pixel spacing of every frame.
fn shared_groups<R: Read + Seek>(
    parser: &mut Parser<'_, R>,
    length: u32,
    header: &mut Header,
) -> Result<()> {
    parser.items(length, 0, |parser, item_length, depth| {
        parser.item_elements(item_length, depth, |parser, element, depth| {
            if element.tag != (0x0028, 0x9110) {
                return parser.skip_value(&element, depth);
            }
            // Pixel Measures: (0028,0030) Pixel Spacing, "row\column" in mm.
            parser.items(element.length, depth, |parser, item_length, depth| {
                parser.item_elements(item_length, depth, |parser, element, depth| {
                    if element.tag != (0x0028, 0x0030) {
                        return parser.skip_value(&element, depth);
                    }
                    let text = parser.text(element.length)?;
                    let mut values = text.split('\\').map(|v| v.trim().parse::<f64>().ok());
                    if let (Some(Some(row)), Some(Some(column))) = (values.next(), values.next()) {
                        header.pixel_spacing = Some((row, column));
                    }
                    Ok(())
                })
            })
        })
    })
}

/// The per-frame functional groups: where each frame of a TILED_SPARSE level lies.
fn per_frame_groups<R: Read + Seek>(
    parser: &mut Parser<'_, R>,
    length: u32,
    header: &mut Header,
) -> Result<()> {
    let mut positions = Vec::new();
    parser.items(length, 0, |parser, item_length, depth| {
        let mut position = (0i64, 0i64);
        parser.item_elements(item_length, depth, |parser, element, depth| {
            if element.tag != (0x0048, 0x021A) {
                return parser.skip_value(&element, depth);
            }
            // Plane Position (Slide): the frame's column and row in the total pixel matrix.
            parser.items(element.length, depth, |parser, item_length, depth| {
                parser.item_elements(item_length, depth, |parser, element, depth| {
                    match element.tag {
                        (0x0048, 0x021E) => {
                            position.0 = i64::from(parser.ul(element.length)? as i32);
                        }
                        (0x0048, 0x021F) => {
                            position.1 = i64::from(parser.ul(element.length)? as i32);
                        }
                        _ => parser.skip_value(&element, depth)?,
                    }
                    Ok(())
                })
            })
        })?;
        if positions.len() as u64 >= MAX_FRAMES {
            return Err(dicom_error("more per-frame groups than any slide has"));
        }
        positions.push(position);
        Ok(())
    })?;
    header.positions = positions;
    Ok(())
}
