//! Studies of the method on data with known answers (native only): localisation against exact
//! tumour masks on mosaic glimpses, deletion curves, and synthetic slides with known lesions.

pub mod faithfulness;
pub mod glimpse_mosaic;
pub mod localize;
pub mod slide_fit;
pub mod slide_mosaic;
