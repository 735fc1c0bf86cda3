//! `export JOB [--format jsonl|csv]`: every task of a job, streamed page by page (a job that
//! does not exist is an error, with nothing on stdout).
//!
//! JSON Lines carry the whole task record (the same shape as `show --json`). CSV has one row per
//! task with the columns in [`CSV_COLUMNS`]; `data` and `output` are compact JSON in one cell,
//! quoted per RFC 4180 (the error's detail is left out: it is multi-line; use JSON Lines for it).

use super::{Ctx, ensure_job, report_unreadable};
use crate::args::ExportArgs;
use crate::parse;
use tasktrack::{Error, MAX_LIMIT, Result, Task, TaskQuery};

/// The CSV header.
pub const CSV_COLUMNS: [&str; 17] = [
    "job",
    "id",
    "status",
    "status_code",
    "stage",
    "attempts",
    "max_attempts",
    "priority",
    "token",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "error_kind",
    "error_message",
    "data",
    "output",
];

/// Writes the job's tasks on stdout.
pub async fn export(ctx: &Ctx, args: ExportArgs) -> Result<u8> {
    let csv = match args.format.as_str() {
        "jsonl" | "json" => false,
        "csv" => true,
        other => {
            return Err(Error::invalid(format!(
                "--format {other:?}: expected jsonl or csv"
            )));
        }
    };
    let mut query = TaskQuery::new(parse::job(&args.job)?).with_limit(MAX_LIMIT.min(1_000));
    if let Some(s) = &args.status {
        query.statuses = parse::statuses(s)?;
    }
    let mut page = ctx.store.list(&query).await?;
    // Asked before the CSV header is printed, so that a missing job leaves stdout empty.
    if page.tasks.is_empty() && page.unreadable.is_empty() {
        ensure_job(ctx, &query.job).await?;
    }
    if csv {
        ctx.out.print(&format!("{}\n", CSV_COLUMNS.join(",")))?;
    }
    let mut n = 0usize;
    let mut unreadable = Vec::new();
    loop {
        unreadable.append(&mut page.unreadable);
        let mut chunk = String::new();
        for task in &page.tasks {
            let line = if csv {
                csv_row(task)
            } else {
                serde_json::to_string(task).map_err(|e| Error::backend(e.to_string()))?
            };
            chunk.push_str(&line);
            chunk.push('\n');
        }
        n += page.tasks.len();
        ctx.out.print(&chunk)?;
        if ctx.out.stdout_gone() {
            // `export j | head`: the reader has what it wanted.
            return Ok(crate::exit::OK);
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
        page = ctx.store.list(&query).await?;
    }
    ctx.out.note(format!("{n} tasks exported"));
    Ok(report_unreadable(ctx, &query.job, &unreadable))
}

fn csv_row(t: &Task) -> String {
    let ts = |x: Option<tasktrack::Timestamp>| x.map(|t| t.to_rfc3339()).unwrap_or_default();
    let fields = [
        t.job.to_string(),
        t.id.to_string(),
        t.status.to_string(),
        t.status.code().to_string(),
        t.stage.clone().unwrap_or_default(),
        t.attempts.to_string(),
        t.max_attempts.to_string(),
        t.priority.to_string(),
        t.token.to_string(),
        t.created_at.to_rfc3339(),
        t.updated_at.to_rfc3339(),
        ts(t.started_at),
        ts(t.finished_at),
        t.error.as_ref().map(|e| e.kind.clone()).unwrap_or_default(),
        t.error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default(),
        if t.data.is_null() {
            String::new()
        } else {
            t.data.to_string()
        },
        t.output.as_ref().map(|o| o.to_string()).unwrap_or_default(),
    ];
    fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

/// Quotes a field when it holds a comma, quote or line break (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
