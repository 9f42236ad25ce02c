//! A local `File` read through `Read + Seek`, slice by slice (worker-only: `FileReaderSync`), so a
//! slide of any size is read tile by tile and never copied whole into wasm memory.

use std::io::{Error, ErrorKind, Read, Result, Seek, SeekFrom};

use js_sys::{ArrayBuffer, Uint8Array};
use web_sys::{Blob, FileReaderSync};

/// The bytes of a `Blob` (a dropped `File`), with a position.
pub struct FileSource {
    blob: Blob,
    reader: FileReaderSync,
    size: u64,
    position: u64,
}

impl FileSource {
    /// Fails outside a worker: `FileReaderSync` exists only there.
    pub fn new(blob: Blob) -> Result<FileSource> {
        let reader = FileReaderSync::new().map_err(|e| js_io_error("FileReaderSync", e))?;
        Ok(FileSource {
            size: blob.size() as u64,
            blob,
            reader,
            position: 0,
        })
    }
}

impl Read for FileSource {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let end = (self.position + buf.len() as u64).min(self.size);
        if end <= self.position {
            return Ok(0);
        }
        let slice = self
            .blob
            .slice_with_f64_and_f64(self.position as f64, end as f64)
            .map_err(|e| js_io_error("slice", e))?;
        let bytes: ArrayBuffer = self
            .reader
            .read_as_array_buffer(&slice)
            .map_err(|e| js_io_error("read", e))?;
        let bytes = Uint8Array::new(&bytes);
        let n = bytes.length() as usize;
        bytes.copy_to(&mut buf[..n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for FileSource {
    fn seek(&mut self, to: SeekFrom) -> Result<u64> {
        let position = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        self.position = position
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "seek before the file's start"))?;
        Ok(self.position)
    }
}

fn js_io_error(what: &str, e: wasm_bindgen::JsValue) -> Error {
    Error::other(format!("{what}: {e:?}"))
}
