//! The ports: the small traits through which the core reaches a database, a secret store, a stamp and
//! a work queue. Each adapter crate implements some of them; the core and its tests depend only on
//! these. One file per thing reached; every name is re-exported here, so `crate::ports::X` is the one
//! path to use.
//!
//! The ports import only the domain types (stamps, windows, rows, statuses), never the services that
//! use them (`collect`, `fan_out`): the dependency points one way.

pub mod queue;
pub mod secrets;
pub mod stamp;
pub mod store;

pub use queue::{DeadLetter, QueueError, StampQueue, StampWork, WorkReason};
pub use secrets::{SecretStore, SecretStoreError};
pub use stamp::{
    DiscoveredEndpoints, LimitExceeded, PageRows, PullError, PullLimits, PullStage, PullSummary,
    StampSession, UsageSource,
};
pub use store::{
    CollectorStore, CommitReceipt, ExportFilter, LeaseStore, MappingStore, QuarantineReader, StampDirectory,
    StampRegistry, StatusReader, StatusStore, Store, StoreError, StoredUsageRow, UsageLedger, WindowCommit,
    WindowWrite,
};
