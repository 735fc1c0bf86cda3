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
    /// Damaged items whose list sort key does not read as a place and sorts outside every
    /// record's, found by the sweep of a time-bounded first page ([`Listing::add_swept`]):
    /// named on that page.
    swept: Vec<UnreadableTask>,
}

/// Whether `query` bounds the update time: its Queries then compare list sort keys with the
/// bound (and end at the far one), which a key that does not read as a place cannot be
/// compared with.
pub(crate) fn time_bounded(query: &TaskQuery) -> bool {
    query.updated_after.is_some() || query.updated_before.is_some()
}

/// Whether `query`'s page sweeps the list-index ranges outside every record's key for damaged
/// items ([`Listing::add_swept`]): the first page of a time-bounded walk, so that a walk names
/// each of them once.
pub(crate) fn sweeps(query: &TaskQuery) -> bool {
    time_bounded(query) && query.after.is_none()
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
                    self.add_unplaced(query, it, lsk, unreadable);
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

    /// Keeps `unreadable`, item `it` whose list sort key `lsk` does not read as a place, if it
    /// passes what of `query` reads of it ([`passes_unplaced`]). Under a time bound, one whose
    /// key sorts outside every record's is left to the sweep ([`Listing::add_swept`]): the
    /// bound would otherwise keep or drop it by how its text happens to sort.
    fn add_unplaced(
        &mut self,
        query: &TaskQuery,
        it: &Item,
        lsk: String,
        unreadable: UnreadableTask,
    ) {
        if time_bounded(query) && item::outside_records(&lsk) {
            return;
        }
        if passes_unplaced(query, &unreadable, it) {
            self.unplaced.push((lsk, unreadable));
        }
    }

    /// Adds item `it` of a list-index range that holds no record's key (the sweep of a
    /// time-bounded first page, [`sweeps`]): a damaged item whose key does not read as a place
    /// is named on this page if its id and stage pass, whatever the time bounds (they cannot
    /// read its time: better named than hidden). Anything else there is placed by its key and
    /// met by the page's Queries.
    pub(crate) fn add_swept(&mut self, query: &TaskQuery, table: &str, it: &Item) -> Result<()> {
        let error = match item::decode_task(table, it) {
            Ok(_) => return Ok(()),
            Err(error @ Error::Corrupt { .. }) => error,
            Err(other) => return Err(other),
        };
        if let (Place::Raw(_), unreadable) = unreadable_item(it, error)?
            && passes_unplaced(query, &unreadable, it)
        {
            self.swept.push(unreadable);
        }
        Ok(())
    }

    /// The page: the entries in the query's order, cut at its limit (tasks and damaged items
    /// alike, [`TaskPage::from_listed`]), and the unplaced damaged items up to where the next
    /// page's Queries start (`lsk` beyond the list sort key of `next`): each is named on the
    /// one page whose key range holds its key, as it is met there and on no other page. (A
    /// partition whose Query stopped at `limit + 1` entries read past that point, since `next`
    /// is at or before its `limit`-th.) Under a time bound, one whose key sorts outside every
    /// record's was left to the sweep and is named on the walk's first page (`swept`); one
    /// whose key sorts among records' is still compared with the bound by its text (nothing
    /// cheaper can find it), and met on no page if that text sorts outside the bound.
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
        page.unreadable.extend(self.swept);
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
    stage_passes(query, it) && query.admits_place(at)
}

/// Whether a damaged item `it` whose list sort key does not read as a place passes `query` by
/// what reads of it: its id (`unreadable`'s, its key) and its stage ([`stage_passes`]). Its
/// time does not read, so time bounds cannot tell (see [`Listing::add_unplaced`]).
fn passes_unplaced(query: &TaskQuery, unreadable: &UnreadableTask, it: &Item) -> bool {
    let id = unreadable.id.as_str();
    let prefix = query.id_prefix.as_ref();
    prefix.is_none_or(|p| id.starts_with(p.as_str())) && stage_passes(query, it)
}

/// Whether a damaged item `it` passes `query`'s stage filter by its claim attributes
/// ([`claim_stage`]; a finished task has none, and then the filter cannot tell, so it passes).
fn stage_passes(query: &TaskQuery, it: &Item) -> bool {
    query.stage.as_ref().is_none_or(|wanted| {
        claim_stage(it, &query.job).is_none_or(|stage| stage.as_ref() == Some(wanted))
    })
}
