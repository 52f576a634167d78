//! What the host extracts from a page, natively and bounded:
//! - `select`: CSS selectors for spiders (`response.select`, WIT 0.1.1);
//! - `formats`: what a crawl's `formats` ask of each page (`metadata` and
//!   `jsonld` by a streaming scan, `metadata.rs`; `text` from the parsed
//!   page, `text.rs`; `markdown` from the same, `markdown.rs`).

pub mod formats;
mod markdown;
pub mod metadata;
pub mod select;
mod text;

pub use formats::{Format, Formatted};
pub use select::{split_query, Bounds, Document, Element, Pick, SelectError};
