//! The domain of azs-usage.
//!
//! This crate knows stamps, reported windows, usage rows, subscription mappings and processing
//! statuses, and the small traits ("ports") through which the collection loop reaches the outside
//! world. It knows nothing of HTTP clients, databases, secret stores or serverless platforms: those are
//! adapters that implement the ports (see the workspace README's architecture section).

pub mod audit;
pub mod check;
pub mod collect;
pub mod drift;
pub mod error;
pub mod fan_out;
pub mod mapping;
pub mod observed;
pub mod ports;
pub mod quarantine;
pub mod rating;
pub mod registration;
pub mod secret;
pub mod spreadsheet;
pub mod stamp;
pub mod status;
pub mod usage;
pub mod window;

pub use error::{FieldError, ValidationErrors};
pub use mapping::SubscriptionMapping;
pub use secret::Secret;
pub use stamp::{Credential, Stamp, StampConnection, StampId};
pub use status::{ProcessingStatus, RunOutcome};
pub use usage::{Quantity, RowKey, UsageRow};
pub use window::ReportedWindow;
