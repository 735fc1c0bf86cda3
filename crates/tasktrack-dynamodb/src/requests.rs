//! The requests that need care: sending a transaction, recognising a refused write that was in
//! fact our own (an SDK retry of a write whose response was lost), and counting requests.

use crate::documents::DynamoDocuments;
use crate::error::{content_refusal, sdk_error};
use crate::item::{self, Item};
use crate::txn::{Outcome, Reason, Transact};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{CancellationReason, TransactWriteItem};
use std::sync::atomic::{AtomicU64, Ordering};
use tasktrack_core::Result;

/// How many requests of each kind a store sent: what the cost model in the docs is checked with.
#[derive(Debug, Default)]
pub struct Requests {
    /// `GetItem`.
    pub get: AtomicU64,
    /// `PutItem` / `DeleteItem`.
    pub write: AtomicU64,
    /// `TransactWriteItems`.
    pub transact: AtomicU64,
    /// `Query` pages.
    pub query: AtomicU64,
    /// Conditional writes refused (someone wrote first).
    pub refused: AtomicU64,
    /// Writes refused only because an SDK retry re-sent a write that had already landed
    /// (recognised by the item holding exactly our record), counted as done.
    pub replayed: AtomicU64,
}

impl Requests {
    /// `(get, write, transact, query, refused)` so far.
    pub fn snapshot(&self) -> [u64; 5] {
        [
            &self.get,
            &self.write,
            &self.transact,
            &self.query,
            &self.refused,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// Whether `current` (the item a refused write found) holds exactly the record we wrote: then
/// the refusal is our own earlier attempt, re-sent by the SDK after a lost response.
pub(crate) fn same_doc(current: Option<&Item>, ours: &Item) -> bool {
    current
        .and_then(|c| c.get(item::DOC))
        .is_some_and(|doc| Some(doc) == ours.get(item::DOC))
}

/// Whether a cancelled transaction had in fact been applied by an earlier attempt (an SDK
/// retry after a lost response): every conditional put found exactly our record, every
/// conditional delete found nothing, and nothing else failed.
fn already_applied(items: &[TransactWriteItem], reasons: &[CancellationReason]) -> bool {
    items.len() == reasons.len()
        && items
            .iter()
            .zip(reasons)
            .all(|(w, r)| match (r.code(), &w.put, &w.delete) {
                (Some("None") | None, _, _) => w.put.is_none() && w.delete.is_none(),
                (Some("ConditionalCheckFailed"), Some(put), _) => same_doc(r.item(), &put.item),
                (Some("ConditionalCheckFailed"), None, Some(_)) => r.item().is_none(),
                _ => false,
            })
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[async_trait]
impl Transact for DynamoDocuments {
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Outcome> {
        bump(&self.stats.transact);
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .send()
            .await
        {
            Ok(_) => Ok(Outcome::Committed),
            Err(err) => {
                use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
                if let Some(E::TransactionCanceledException(cancel)) = err.as_service_error() {
                    let reasons = cancel.cancellation_reasons();
                    if already_applied(&items, reasons) {
                        bump(&self.stats.replayed);
                        return Ok(Outcome::Committed);
                    }
                    let reasons = reasons.iter().map(|r| {
                        Reason::new(r.code().unwrap_or("None"), r.message().map(str::to_owned))
                    });
                    return Ok(Outcome::Cancelled(reasons.collect()));
                }
                if let Some(message) = content_refusal(&err) {
                    return Ok(Outcome::Invalid(message));
                }
                if let Some(E::TransactionInProgressException(_)) = err.as_service_error() {
                    return Ok(Outcome::Cancelled(vec![Reason::new(
                        "TransactionConflict",
                        None,
                    )]));
                }
                Err(sdk_error("TransactWriteItems", &self.endpoint, err))
            }
        }
    }
}
