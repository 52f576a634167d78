//! Incremental crawls (issue 31, `revisit`): what a run knows of a page
//! from the last. `spec` is the request's field; `change` tells a changed
//! page from the same one, exactly or ignoring noise; `page_state` is the state
//! kept per page between runs (validators for conditional requests, the
//! fingerprint) and what one fetch makes of it.

mod change;
mod page_state;
mod spec;

pub use change::{Change, ChangeMode, Fingerprint, FUZZY_BITS};
pub use page_state::{observe, PageState, MAX_VALIDATOR};
pub use spec::{Adaptive, Emit, Revisit};
