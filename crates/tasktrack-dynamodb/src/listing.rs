//! [`Listing`]: what the list-index partitions of one `list` hold for its page, damaged task
//! items included (named in [`TaskPage::unreadable`] instead of failing the page).

use crate::documents::claim_stage;
use crate::item::{self, Item};
use tasktrack_core::{
    Cursor, Error, Listed, Result, TaskId, TaskPage, TaskQuery, Timestamp, UnreadableTask,
};

/// The entries a `list` read from its list-index partitions (one per status), before they are
/// merged into its page.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Tasks, and damaged items at their place in the list order, that pass the query.
    entries: Vec<Listed>,
    /// Damaged items whose list sort key does not read as a place (edited by hand), each with
    /// that key as it is: it still orders them in their partition's Query, which a cursor
    /// bounds (see [`Listing::page`]).
    unplaced: Vec<(String, UnreadableTask)>,
}

impl Listing {
    /// How many entries the page may be cut from so far.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds item `it` of a list-index partition of `query` (table `table`), read in the
    /// partition's order; `false` when it is past the query's far time bound, after which that
    /// partition holds nothing more for the page. An item that does not decode is kept at its
    /// place (see [`unreadable_item`]); one whose id does not read fails the list (`Corrupt`).
    pub(crate) fn add(&mut self, query: &TaskQuery, table: &str, it: &Item) -> Result<bool> {
        let entry = match item::decode_task(table, it) {
            Ok((task, _)) => Listed::Task(task),
            Err(error @ Error::Corrupt { .. }) => match unreadable_item(it, error)? {
                (Place::At(at), unreadable) => Listed::Unreadable(at, unreadable),
                (Place::Raw(lsk), unreadable) => {
                    self.unplaced.push((lsk, unreadable));
                    return Ok(true);
                }
            },
            Err(other) => return Err(other),
        };
        let (updated_at, _) = entry.place();
        if beyond(query, updated_at) {
            return Ok(false);
        }
        if passes(query, &entry, it) {
            self.entries.push(entry);
        }
        Ok(true)
    }

    /// The page: the entries in the query's order, cut at its limit (tasks and damaged items
    /// alike, [`TaskPage::from_listed`]), and the unplaced damaged items up to where the next
    /// page's Queries start (`lsk` beyond the list sort key of `next`): each is named on the
    /// one page whose key range holds its key, as it is met there and on no other page. (A
    /// partition whose Query stopped at `limit + 1` entries read past that point, since `next`
    /// is at or before its `limit`-th.) Met on no page: one whose key sorts outside the query's
    /// time bounds, which Queries compare it by.
    pub(crate) fn page(mut self, query: &TaskQuery) -> TaskPage {
        self.entries.sort_by(|a, b| a.place().cmp(&b.place()));
        if query.newest_first {
            self.entries.reverse();
        }
        let mut page = TaskPage::from_listed(self.entries, query.limit);
        let next = page
            .next
            .as_ref()
            .map(|c| item::list_sk(c.updated_at, c.id.as_str()));
        let on_this_page = |lsk: &String| match &next {
            None => true,
            Some(next) if query.newest_first => lsk >= next,
            Some(next) => lsk <= next,
        };
        let unplaced = self.unplaced.into_iter();
        page.unreadable.extend(
            unplaced
                .filter(|(lsk, _)| on_this_page(lsk))
                .map(|(_, u)| u),
        );
        page
    }
}

/// Where a damaged item sorts in the list index.
enum Place {
    /// Its list sort key reads as `(updated_at, id)`.
    At(Cursor),
    /// Its list sort key, which does not read as a place.
    Raw(String),
}

/// A task item that does not decode (`error`), as a listing names it: its id (its key, `sk`,
/// which `delete` takes) and its place in the list order, read from its list sort key (`lsk`,
/// which its partition's Query is ordered and bounded by). `Corrupt` (`error`) if its id does
/// not read, or it has no `lsk` string (it could not have been met in a list-index Query).
fn unreadable_item(it: &Item, error: Error) -> Result<(Place, UnreadableTask)> {
    let text = |attr: &str| it.get(attr).and_then(|v| v.as_s().ok());
    let id = text(item::SK).and_then(|id| TaskId::new(id.as_str()).ok());
    let (Some(id), Some(lsk)) = (id, text(item::LIST_SK)) else {
        return Err(error);
    };
    let place = item::parse_list_sk(lsk).map_or_else(|| Place::Raw(lsk.clone()), Place::At);
    Ok((place, UnreadableTask::new(id, &error)))
}

/// Whether an entry updated at `updated_at` is past the query's far time bound: nothing after
/// it in its partition's order can match.
fn beyond(query: &TaskQuery, updated_at: Timestamp) -> bool {
    if query.newest_first {
        query.updated_after.is_some_and(|t| updated_at < t)
    } else {
        query.updated_before.is_some_and(|t| updated_at >= t)
    }
}

/// Whether `entry` (read from item `it`) passes `query`'s filters and cursor. A damaged item
/// passes by what reads of it: its status is its partition's, its place gives its `updated_at`,
/// its key its id, and its claim attributes its stage ([`claim_stage`]; a finished task has
/// none, and then a stage filter cannot tell, so it passes: better named than hidden).
fn passes(query: &TaskQuery, entry: &Listed, it: &Item) -> bool {
    let at = match entry {
        Listed::Task(task) => return query.matches(task) && query.is_after_cursor(task),
        Listed::Unreadable(at, _) => at,
    };
    let stage = query.stage.as_ref().is_none_or(|wanted| {
        claim_stage(it, &query.job).is_none_or(|stage| stage.as_ref() == Some(wanted))
    });
    stage && query.admits_place(at)
}
