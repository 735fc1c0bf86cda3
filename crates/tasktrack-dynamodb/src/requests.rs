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
/// retry after a lost response): every conditional put found exactly our record, and nothing
/// else failed.
///
/// A delete that found no item is never taken for our own: nothing in an absent item tells
/// our earlier attempt from another writer's delete, and taking it for ours answered two
/// racing deletes both `Ok`. Our own retries need no such guess: the SDK gives every
/// `TransactWriteItems` one idempotency token (`ClientRequestToken`) for all its attempts, and
/// DynamoDB answers a retry of a transaction that landed with success (for 10 minutes), so
/// the refusal only reaches us when another writer removed the item. (moto ignores the token;
/// its responses are not lost in practice.)
fn already_applied(items: &[TransactWriteItem], reasons: &[CancellationReason]) -> bool {
    items.len() == reasons.len()
        && items
            .iter()
            .zip(reasons)
            .all(|(w, r)| match (r.code(), &w.put) {
                (Some("None") | None, _) => w.put.is_none() && w.delete.is_none(),
                (Some("ConditionalCheckFailed"), Some(put)) => same_doc(r.item(), &put.item),
                _ => false,
            })
}

/// The error of a transaction whose first attempt DynamoDB still had in progress after the
/// SDK's retries (`TransactionInProgressException`: a retry carrying the same idempotency token
/// came in before the first attempt finished). That attempt may yet commit, so its writes are
/// not "changed" (a conflict, sent again under a new token): a delete that did land would then
/// find no item and its caller be told `NotFound`. Its outcome is unknown, as after a timeout.
fn still_in_progress(endpoint: &str) -> tasktrack_core::Error {
    tasktrack_core::Error::Unavailable(format!(
        "DynamoDB at {endpoint}: TransactWriteItems was still in progress after the SDK's \
         retries (TransactionInProgressException); it may or may not have been written"
    ))
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[async_trait]
impl Transact for DynamoDocuments {
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Outcome> {
        bump(&self.stats.transact);
        // No ClientRequestToken of our own: the SDK makes one per call, kept by all its retries,
        // which is what lets DynamoDB answer a retry of a landed transaction (`already_applied`).
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
                    return Err(still_in_progress(&self.endpoint));
                }
                Err(sdk_error("TransactWriteItems", &self.endpoint, err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, Update};

    fn doc(text: &str) -> Item {
        Item::from([(item::DOC.to_owned(), AttributeValue::S(text.into()))])
    }

    fn put(text: &str) -> TransactWriteItem {
        let put = Put::builder()
            .table_name("t")
            .set_item(Some(doc(text)))
            .build()
            .unwrap();
        TransactWriteItem::builder().put(put).build()
    }

    fn delete() -> TransactWriteItem {
        let delete = Delete::builder()
            .table_name("t")
            .set_key(Some(doc("key")))
            .build()
            .unwrap();
        TransactWriteItem::builder().delete(delete).build()
    }

    fn counter() -> TransactWriteItem {
        let update = Update::builder()
            .table_name("t.counters")
            .set_key(Some(doc("key")))
            .update_expression("ADD n :one")
            .build()
            .unwrap();
        TransactWriteItem::builder().update(update).build()
    }

    fn refused(current: Option<Item>) -> CancellationReason {
        CancellationReason::builder()
            .code("ConditionalCheckFailed")
            .set_item(current)
            .build()
    }

    fn fine() -> CancellationReason {
        CancellationReason::builder().code("None").build()
    }

    #[test]
    fn a_put_that_found_exactly_our_record_was_ours() {
        let items = [put("ours"), counter()];
        assert!(already_applied(
            &items,
            &[refused(Some(doc("ours"))), fine()]
        ));
        assert!(!already_applied(
            &items,
            &[refused(Some(doc("theirs"))), fine()]
        ));
        assert!(!already_applied(&items, &[refused(None), fine()]));
    }

    /// Another writer's delete leaves what our own landed delete would: no item. Only the
    /// idempotency token (DynamoDB's answer to the SDK's retry) may say it was ours.
    #[test]
    fn a_delete_that_found_no_item_was_not_ours() {
        assert!(!already_applied(
            &[delete(), counter()],
            &[refused(None), fine()]
        ));
    }
}
