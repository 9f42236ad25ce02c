//! Readers that let one `tiff::decoder::Decoder` per chain of directories share one file.
//!
//! OME-TIFF (and other writers) keep a pyramid's reduced levels in SubIFDs: directories that
//! the main chain's first directory points to, not links of that chain. The `tiff` crate
//! decodes chunks only of directories in a file's main chain, so each SubIFD is read through
//! a [`ChainReader`] whose first bytes are a made-up header naming that SubIFD as the first
//! directory; every other byte is the file's own.

use std::cell::RefCell;
use std::io::{self, Read, Seek, SeekFrom};
use std::rc::Rc;

/// The file all chains read, and where its reader stands (unknown after a failed seek).
struct SharedFile<R> {
    reader: R,
    position: Option<u64>,
}

/// One chain's view of the shared file, with its own position.
pub struct ChainReader<R> {
    file: Rc<RefCell<SharedFile<R>>>,
    position: u64,
    /// Bytes shown in place of the file's first bytes (empty: the file's own header).
    header: Vec<u8>,
}

impl<R: Read + Seek> ChainReader<R> {
    /// The file as it is.
    pub fn new(reader: R) -> ChainReader<R> {
        ChainReader {
            file: Rc::new(RefCell::new(SharedFile {
                reader,
                position: None,
            })),
            position: 0,
            header: Vec::new(),
        }
    }

    /// The same file, its header rewritten so that the directory at `offset` comes first.
    /// `header` is the file's first 16 bytes, which say the byte order and classic or BigTIFF.
    pub fn starting_at(&self, header: &[u8; 16], offset: u64) -> ChainReader<R> {
        let little = header[0] == b'I';
        let mut bytes = header[..4].to_vec();
        if header[2..4] == [43, 0] || header[2..4] == [0, 43] {
            // BigTIFF: the offset size (8) and a zero, then an 8-byte offset.
            let (eight, zero) = (8u16, 0u16);
            if little {
                bytes.extend(eight.to_le_bytes().into_iter().chain(zero.to_le_bytes()));
                bytes.extend(offset.to_le_bytes());
            } else {
                bytes.extend(eight.to_be_bytes().into_iter().chain(zero.to_be_bytes()));
                bytes.extend(offset.to_be_bytes());
            }
        } else {
            // Classic TIFF: offsets fit 4 bytes; a larger one cannot be a classic file's.
            let offset = u32::try_from(offset).unwrap_or(u32::MAX);
            bytes.extend(if little {
                offset.to_le_bytes()
            } else {
                offset.to_be_bytes()
            });
        }
        ChainReader {
            file: Rc::clone(&self.file),
            position: 0,
            header: bytes,
        }
    }

    /// The whole file, from its first byte (its own header).
    pub fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut file = self.file.borrow_mut();
        file.position = None;
        file.reader.rewind()?;
        let mut bytes = Vec::new();
        file.reader.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

impl<R: Read + Seek> Read for ChainReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let at = usize::try_from(self.position).unwrap_or(usize::MAX);
        if let Some(rest) = self.header.get(at..).filter(|rest| !rest.is_empty()) {
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.position += n as u64;
            return Ok(n);
        }
        let mut file = self.file.borrow_mut();
        if file.position != Some(self.position) {
            // Seek only when another chain moved the reader: a buffered reader keeps its buffer
            // over reads that follow each other.
            file.position = None;
            file.reader.seek(SeekFrom::Start(self.position))?;
        }
        let n = file.reader.read(buf)?;
        self.position += n as u64;
        file.position = Some(self.position);
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for ChainReader<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "seek before the start");
        self.position = match to {
            SeekFrom::Start(at) => at,
            SeekFrom::Current(by) => self.position.checked_add_signed(by).ok_or_else(invalid)?,
            SeekFrom::End(by) => {
                let mut file = self.file.borrow_mut();
                file.position = None;
                let end = file.reader.seek(SeekFrom::End(0))?;
                file.position = Some(end);
                end.checked_add_signed(by).ok_or_else(invalid)?
            }
        };
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn chains_read_the_same_file_each_from_its_own_position() {
        let data: Vec<u8> = (0..64).collect();
        let mut main = ChainReader::new(Cursor::new(data.clone()));
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(b"II*\0");
        let mut sub = main.starting_at(&header, 0x0102_0304);
        let mut buf = [0u8; 10];
        main.read_exact(&mut buf).unwrap();
        assert_eq!(buf, data[..10]);
        // The made-up header, then the file's own bytes.
        sub.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [b'I', b'I', b'*', 0, 4, 3, 2, 1, 8, 9]);
        main.read_exact(&mut buf[..4]).unwrap();
        assert_eq!(buf[..4], data[10..14]);
        sub.seek(SeekFrom::Start(60)).unwrap();
        assert_eq!(sub.read(&mut buf).unwrap(), 4);
        assert_eq!(buf[..4], data[60..]);
        assert_eq!(main.seek(SeekFrom::End(-1)).unwrap(), 63);
        assert!(main.seek(SeekFrom::Current(-100)).is_err());
        assert_eq!(main.read_all().unwrap(), data);
    }

    #[test]
    fn bigtiff_and_big_endian_headers_keep_their_layout() {
        let main = ChainReader::new(Cursor::new(vec![0u8; 32]));
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(b"MM\0+");
        let mut sub = main.starting_at(&header, 0x1122);
        let mut buf = [0u8; 16];
        sub.read_exact(&mut buf).unwrap();
        assert_eq!(
            buf,
            [b'M', b'M', 0, 43, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0x11, 0x22]
        );
    }
}
