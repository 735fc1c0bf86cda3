//! A page of `list` from the documents the server filtered and sorted: each decoded on its own,
//! so that a damaged one (edited by hand) is named in [`TaskPage::unreadable`] instead of failing
//! the page and hiding the rest of its job.
//!
//! The server already matched a damaged document against the query's filters by its raw fields.
//! Its place in the order is read from its raw `updated_at` and `id` when they are the text this
//! backend writes (`updated_at` in the exact form [`Timestamp::to_rfc3339`] gives, so that a
//! cursor at it selects exactly what follows it): it then pages like any task. Otherwise
//! ("unplaced"), it is named on the page whose read meets it, without counting towards the
//! limit nor ending the page: one whose `updated_at` is still text sorts and filters as that
//! text on the server, so it is named on the page whose range holds it; one whose `updated_at`
//! is not text (a BSON date or number set by hand) is left out by every cursor and time filter
//! (MongoDB compares values of one type only), so only a page without them meets it: a first
//! page whose read reaches it in the sort. A damaged document with no readable id (neither its
//! `id` nor its `_id`) fails the page as `Corrupt`.

use crate::codec;
use crate::documents::MongoDocuments;
use mongodb::bson::{Bson, Document};
use tasktrack_core::{
    Cursor, Error, Listed, Result, TaskId, TaskPage, TaskQuery, Timestamp, UnreadableTask,
};

/// What a listing has read so far, in the server's order.
#[derive(Default)]
struct Read {
    /// The tasks, and the damaged documents placed in the order.
    listed: Vec<Listed>,
    /// The damaged documents whose place does not read.
    unplaced: Vec<Unplaced>,
    /// How many documents were read.
    docs: usize,
}

/// A damaged document whose place in the order does not read.
struct Unplaced {
    /// How many placed entries the server sorted before it.
    after: usize,
    unreadable: UnreadableTask,
    /// Whether its `updated_at` is text, so that a cursor past it on the server leaves it
    /// behind.
    ranged: bool,
}

/// One page of `query` from the documents `filter` selects in `sort` order: reads `limit + 1`
/// documents, as a healthy page needs; only when unplaced ones took some of them does it read
/// on (past those already read) for the entries the page needs.
pub(crate) async fn page(
    docs: &MongoDocuments,
    filter: Document,
    sort: Document,
    query: &TaskQuery,
) -> Result<TaskPage> {
    let want = query.limit.saturating_add(1);
    let location = docs.tasks_location();
    let mut read = Read::default();
    loop {
        let ask = want - read.listed.len();
        let batch = docs
            .find_docs(filter.clone(), sort.clone(), read.docs, ask)
            .await?;
        let full = batch.len() == ask;
        for doc in batch {
            read.add(doc, &location)?;
        }
        if read.listed.len() >= want || !full {
            return Ok(read.cut(query.limit));
        }
    }
}

impl Read {
    /// Adds the next document: its task, or why it does not decode and where it stands.
    fn add(&mut self, doc: Document, location: &str) -> Result<()> {
        self.docs += 1;
        let updated = doc.get("updated_at").cloned();
        let (id, key) = (doc.get("id").cloned(), doc.get("_id").cloned());
        let error = match codec::task_from_doc(doc, location) {
            Ok(task) => {
                self.listed.push(Listed::Task(task));
                return Ok(());
            }
            Err(error @ Error::Corrupt { .. }) => error,
            Err(other) => return Err(other),
        };
        if let Some(at) = place(updated.as_ref(), id.as_ref()) {
            let unreadable = UnreadableTask::new(at.id.clone(), &error);
            self.listed.push(Listed::Unreadable(at, unreadable));
            return Ok(());
        }
        let Some(id) = task_id(id.as_ref()).or_else(|| task_id_of_key(key.as_ref())) else {
            return Err(error);
        };
        self.unplaced.push(Unplaced {
            after: self.listed.len(),
            unreadable: UnreadableTask::new(id, &error),
            ranged: matches!(updated, Some(Bson::String(_))),
        });
        Ok(())
    }

    /// The page: the placed entries cut at `limit` by [`TaskPage::from_listed`], and the
    /// unplaced ones that belong to it named too. A ranged one read past the page's last entry
    /// is left to the next page, whose read meets it again.
    fn cut(self, limit: usize) -> TaskPage {
        let more = self.listed.len() > limit;
        let mut page = TaskPage::from_listed(self.listed, limit);
        for u in self.unplaced {
            if !u.ranged || !more || u.after < limit {
                page.unreadable.push(u.unreadable);
            }
        }
        page
    }
}

/// The place raw `updated_at` and `id` give, when both are the text this backend writes.
fn place(updated: Option<&Bson>, id: Option<&Bson>) -> Option<Cursor> {
    let Some(Bson::String(text)) = updated else {
        return None;
    };
    let updated_at = Timestamp::parse(text)
        .ok()
        .filter(|t| t.to_rfc3339() == *text)?;
    Some(Cursor {
        updated_at,
        id: task_id(id)?,
    })
}

/// A raw `id` field as a task id.
fn task_id(id: Option<&Bson>) -> Option<TaskId> {
    match id {
        Some(Bson::String(id)) => TaskId::new(id.as_str()).ok(),
        _ => None,
    }
}

/// The task id in a raw `_id` (`job` U+001F `id`, see [`codec::task_id`]).
fn task_id_of_key(key: Option<&Bson>) -> Option<TaskId> {
    match key {
        Some(Bson::String(key)) => TaskId::new(key.split_once('\u{1f}')?.1).ok(),
        _ => None,
    }
}
