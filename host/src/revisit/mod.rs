//! Incremental crawls (issue 31, `revisit`): what a run knows of a page
//! from the last. `change` tells a changed page from the same one, exactly
//! or ignoring noise. Validators for conditional requests and the page
//! state the store keeps per URL build on it.

mod change;

pub use change::{Change, ChangeMode, Fingerprint, FUZZY_BITS};
