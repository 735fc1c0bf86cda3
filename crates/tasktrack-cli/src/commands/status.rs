//! `status [JOB] [--watch]`: counts per status (and stage) with a progress bar.

use super::{Ctx, is_missing, no_such_job};
use crate::args::StatusArgs;
use crate::output::{bar, table};
use crate::parse;
use serde_json::{Value, json};
use std::io::IsTerminal;
use tasktrack::{Counts, Result, Status, StatusCounts};

/// Prints the counts once, or every `--interval` until interrupted with `--watch`.
///
/// A named job that does not exist is an error, except under `--watch`: a watch may start
/// before the job's first tasks are added, and shows it as "(no such job)" until then.
pub async fn status(ctx: &Ctx, args: StatusArgs) -> Result<u8> {
    let job = args.job.as_deref().map(parse::job).transpose()?;
    let interval = parse::positive_duration("interval", &args.interval)?;
    if !args.watch {
        let all = gather(ctx, job.as_ref()).await?;
        if let (Some(job), [counts]) = (&job, all.as_slice())
            && is_missing(counts)
        {
            return Err(no_such_job(job));
        }
        let doc = document(&all, job.is_some());
        ctx.out.emit(&doc, || render(&all))?;
        return Ok(crate::exit::OK);
    }
    let clear = std::io::stdout().is_terminal() && !ctx.out.json;
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let all = gather(ctx, job.as_ref()).await?;
        if ctx.out.json {
            // One compact document per refresh: JSON Lines.
            ctx.out
                .print(&format!("{}\n", document(&all, job.is_some())))?;
        } else {
            let when = crate::output::when(Some(ctx.now()));
            let screen = format!(
                "{}{when}\n{}\n",
                if clear { "\x1b[2J\x1b[H" } else { "" },
                render(&all)
            );
            ctx.out.print(&screen)?;
        }
        if ctx.out.stdout_gone() {
            // `status --watch | head`: the reader has what it wanted.
            return Ok(crate::exit::OK);
        }
        tokio::select! {
            _ = &mut stop => return Ok(crate::exit::OK),
            () = tokio::time::sleep(interval) => {}
        }
    }
}

async fn gather(ctx: &Ctx, job: Option<&tasktrack::JobName>) -> Result<Vec<Counts>> {
    match job {
        Some(job) => Ok(vec![ctx.store.counts(job).await?]),
        None => {
            let mut all = Vec::new();
            for j in ctx.store.jobs(None).await? {
                all.push(ctx.store.counts(&j.name).await?);
            }
            Ok(all)
        }
    }
}

/// The JSON form: the store's counts plus the derived totals.
pub fn summary(c: &Counts) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("total".into(), json!(c.by_status.total()));
        obj.insert("finished".into(), json!(c.finished()));
        obj.insert("all_terminal".into(), json!(c.all_terminal()));
        obj.insert("has_failures".into(), json!(c.has_failures()));
    }
    v
}

fn document(all: &[Counts], one: bool) -> Value {
    match all {
        [c] if one => summary(c),
        _ => Value::Array(all.iter().map(summary).collect()),
    }
}

fn render(all: &[Counts]) -> String {
    if all.is_empty() {
        return "no jobs".to_string();
    }
    let mut header: Vec<&str> = vec!["job", "stage"];
    header.extend(Status::ALL.iter().map(|s| s.as_str()));
    header.push("progress");
    let mut t = table(&header);
    for c in all {
        let name = if !is_missing(c) {
            c.job.to_string()
        } else {
            format!("{} (no such job)", c.job)
        };
        t.add_row(row(&name, "", &c.by_status, c.finished()));
        for (stage, s) in &c.by_stage {
            let done = s.succeeded + s.exhausted + s.ignored;
            t.add_row(row("", stage, s, done));
        }
    }
    let mut out = t.to_string();
    for c in all.iter().filter(|c| c.unreadable > 0) {
        out.push_str(&unreadable_note(c));
    }
    out
}

/// The line under the table for a job whose counts hold tasks whose status does not read
/// ([`Counts::unreadable`]): counted in no column, so the columns sum to less than the job.
fn unreadable_note(c: &Counts) -> String {
    format!(
        "\n{}: {} task(s) whose status does not read (damaged records), in no column above: \
         `tasktrack list {}` names them",
        c.job, c.unreadable, c.job
    )
}

fn row(job: &str, stage: &str, s: &StatusCounts, done: u64) -> Vec<String> {
    let mut r = vec![job.to_string(), stage.to_string()];
    r.extend(Status::ALL.iter().map(|st| s.get(*st).to_string()));
    r.push(bar(done, s.total(), 24));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasktrack::JobName;

    /// Tasks whose status does not read are in no column, so a line under the table says how
    /// many there are and how to find them; the JSON form carries them as `unreadable`.
    #[test]
    fn unreadable_statuses_get_a_line_under_the_table() {
        let job = JobName::new("j").unwrap();
        let rows = [(None, Some(Status::Pending), 2), (None, None, 1)];
        let counts = Counts::from_raw(job.clone(), None, rows);
        let shown = render(std::slice::from_ref(&counts));
        assert!(
            shown.ends_with(
                "j: 1 task(s) whose status does not read (damaged records), in no column \
                 above: `tasktrack list j` names them"
            ),
            "{shown}"
        );
        let doc = summary(&counts);
        assert_eq!((&doc["unreadable"], &doc["total"]), (&json!(1), &json!(2)));

        let clean = Counts::from_raw(job, None, [(None, Some(Status::Pending), 2)]);
        assert!(!render(std::slice::from_ref(&clean)).contains("does not read"));
        assert!(summary(&clean).get("unreadable").is_none());
    }
}
