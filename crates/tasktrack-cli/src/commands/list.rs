//! `list JOB`: a job's tasks, oldest update first, with keyset pagination.

use super::{Ctx, ensure_job, report_unreadable};
use crate::args::ListArgs;
use crate::output::{clip, table, when};
use crate::parse;
use tasktrack::{Cursor, MAX_LIMIT, Result, Store, Task, TaskQuery, UnreadableTask};

/// Prints up to `--limit` tasks (a JSON array under `--json`); when more match, the cursor to
/// continue from is printed on stderr (a JSON line `{"next": CURSOR}` under `--json`). A job
/// that does not exist is an error, not an empty list.
pub async fn list(ctx: &Ctx, args: ListArgs) -> Result<u8> {
    let job = parse::job(&args.job)?;
    let mut query = TaskQuery::new(job.clone());
    if let Some(s) = &args.status {
        query.statuses = parse::statuses(s)?;
    }
    if let Some(stage) = &args.stage {
        // A name no stage can have (empty, a control character) is a typo, not an empty answer.
        tasktrack::validate_key("stage", stage)?;
    }
    query.stage = args.stage.clone();
    query.id_prefix = args.prefix.clone();
    query.newest_first = args.newest_first;
    query.after = args
        .after
        .as_deref()
        .map(str::parse::<Cursor>)
        .transpose()?;
    let limit = if args.all { None } else { Some(args.limit) };
    if limit == Some(0) {
        return Err(tasktrack::Error::invalid(
            "--limit must be at least 1 (or use --all)",
        ));
    }
    let Fetched {
        tasks,
        unreadable,
        next,
    } = fetch(ctx.store.as_ref(), query, limit).await?;
    if tasks.is_empty() && unreadable.is_empty() {
        ensure_job(ctx, &job).await?;
    }
    ctx.out.emit(&tasks, || render(&tasks))?;
    // The cursor is part of the result (without it a script cannot page), so it is printed
    // under --json and -q too: stdout stays the bare array, the cursor goes to stderr.
    if let Some(next) = next {
        if ctx.out.json {
            ctx.out
                .stderr(&serde_json::json!({ "next": next.to_string() }).to_string());
        } else {
            let next = shell_word(&next.to_string());
            ctx.out
                .stderr(&format!("more tasks match: continue with --after {next}"));
        }
    }
    Ok(report_unreadable(ctx, &job, &unreadable))
}

/// `s` as one word for a POSIX shell: as it is when it is plain, else in single quotes. The
/// cursor ends with a task id, which may hold spaces, quotes or `$` (ids are file names, say):
/// printed bare, the suggested `--after …` would be cut or expanded by the shell when pasted.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.,:/@%+=".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What [`fetch`] gathered.
pub struct Fetched {
    /// The tasks, in query order.
    pub tasks: Vec<Task>,
    /// The damaged tasks the pages named instead ([`tasktrack::TaskPage::unreadable`]).
    pub unreadable: Vec<UnreadableTask>,
    /// Where to continue, when `limit` cut the listing short.
    pub next: Option<Cursor>,
}

/// Pages through the store until `limit` tasks (or all of them) are gathered.
pub async fn fetch(
    store: &dyn Store,
    mut query: TaskQuery,
    limit: Option<usize>,
) -> Result<Fetched> {
    let mut tasks = Vec::new();
    let mut unreadable = Vec::new();
    loop {
        let want = limit.map_or(MAX_LIMIT, |l| (l - tasks.len()).min(MAX_LIMIT));
        query.limit = want;
        let page = store.list(&query).await?;
        tasks.extend(page.tasks);
        unreadable.extend(page.unreadable);
        match page.next {
            Some(next) if limit.is_none_or(|l| tasks.len() < l) => query.after = Some(next),
            next => {
                return Ok(Fetched {
                    tasks,
                    unreadable,
                    next,
                });
            }
        }
    }
}

fn render(tasks: &[Task]) -> String {
    if tasks.is_empty() {
        return "no tasks match".to_string();
    }
    let mut t = table(&["id", "status", "stage", "attempts", "updated", "last error"]);
    for task in tasks {
        let error = task.error.as_ref().map_or(String::new(), |e| {
            clip(&format!("{}: {}", e.kind, e.message), 60)
        });
        t.add_row(vec![
            task.id.to_string(),
            task.status.to_string(),
            task.stage.clone().unwrap_or_default(),
            format!("{}/{}", task.attempts, task.max_attempts),
            when(Some(task.updated_at)),
            error,
        ]);
    }
    t.to_string()
}
