//! What the host extracts from a page for spiders, natively and bounded:
//! `select` answers CSS selectors (`response.select`, WIT 0.1.1).

pub mod select;

pub use select::{Bounds, Document, Element, SelectError};
