//! # tasktrack-core
//!
//! The contract of tasktrack: the task model, the lifecycle rules, the [`Store`] trait, the
//! [`Clock`], the generic compare-and-swap adapter, the in-process [`MemoryStore`], the
//! [`Tracker`] that runs work under a lease, and (feature `testkit`) the conformance suite every
//! backend passes.
//!
//! ## Layout
//! - [`model`]: what a task, job, lease, failure, query and count are (plain serde data).
//! - [`lifecycle`]: every status transition as a pure function; the only place rules live.
//! - [`store`]: the [`Store`] trait and its request types.
//! - [`store_impl!`]: a backend's `impl Store` from lists of forwarders (native / to the
//!   adapter / to an inner value).
//! - [`time`]: [`Timestamp`], [`Clock`], [`SystemClock`], [`ManualClock`].
//! - [`cas`]: [`cas::Documents`] + [`cas::CasStore`]: a whole store from versioned documents.
//! - [`memory`]: `memory://`, built on the adapter.
//! - [`tracker`]: [`Tracker::run`] / [`Tracker::run_next`] / [`Tracker::run_all`].
//! - [`recovery`]: riding out a store outage while claiming and recording outcomes (shared by
//!   the [`Tracker`] and the CLI's `run`).
//! - `testkit` (feature): the conformance suite.
//!
//! ## Example
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tasktrack_core::Result<()> {
//! use std::sync::Arc;
//! use tasktrack_core::*;
//!
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::in_memory());
//! let job = JobName::new("convert")?;
//! let ids = ["a.png", "b.png"].map(|id| NewTask::new(TaskId::new(id).unwrap()));
//! store.create(&job, &ids, CreateMode::SkipExisting, Timestamp::now()).await?;
//!
//! let tracker = Tracker::new(store.clone(), job.clone());
//! while let Some(done) = tracker.run_next(|task| async move {
//!     Ok::<_, std::io::Error>(serde_json::json!({ "converted": task.task.id.as_str() }))
//! }).await? {
//!     assert_eq!(done.status, Status::Succeeded);
//! }
//! assert_eq!(store.counts(&job).await?.by_status.succeeded, 2);
//! # Ok(()) }
//! ```
//!
//! See [`lifecycle`] for the state diagram and the guarantees (exactly-once completion,
//! at-least-once execution, what a lease length must exceed).

pub mod cas;
mod error;
pub mod lifecycle;
pub mod memory;
pub mod model;
pub mod recovery;
pub mod store;
mod store_impl;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod time;
pub mod tracker;

pub use error::{Error, ErrorKind, Refusal, Result};
pub use memory::MemoryStore;
pub use model::*;
pub use store::*;
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
pub use tracker::Tracker;

// For `store_impl!`: the generated impls need no `async_trait` at the call site.
#[doc(hidden)]
pub use async_trait;
