//! `show JOB ID`: the whole record, history and last error included.

use super::{Ctx, ensure_job};
use crate::args::ShowArgs;
use crate::output::{clip, printable, table, when};
use crate::parse;
use tasktrack::{ErrorKind, Result, Task};

/// Prints one task; when it is not found, the error says whether its job is missing too.
pub async fn show(ctx: &Ctx, args: ShowArgs) -> Result<u8> {
    let key = parse::key(&parse::job(&args.job)?, &args.id)?;
    let task = match ctx.store.get(&key).await {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            ensure_job(ctx, &key.job).await?;
            return Err(e);
        }
        other => other?,
    };
    ctx.out.emit(&task, || render(&task))?;
    Ok(crate::exit::OK)
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn render(task: &Task) -> String {
    let mut t = table(&["task", &format!("{}/{}", task.job, task.id)]);
    // Every value through `printable`: the error's detail is the command's stderr, and data,
    // output and messages are whatever was recorded (JSON leaves DEL and C1 controls raw).
    let mut add = |k: &str, v: String| {
        t.add_row(vec![k.to_string(), printable(&v)]);
    };
    add(
        "status",
        format!("{} ({})", task.status, task.status.code()),
    );
    if let Some(stage) = &task.stage {
        add("stage", format!("{stage} of {}", task.stages.join(" → ")));
    }
    add(
        "attempts",
        format!("{} of {}", task.attempts, task.max_attempts),
    );
    add("priority", task.priority.to_string());
    if let Some(nb) = task.not_before {
        add("not before", when(Some(nb)));
    }
    if let Some(l) = &task.lease {
        add(
            "lease",
            format!(
                "{} (token {}) until {}",
                l.owner,
                l.token,
                when(Some(l.expires_at))
            ),
        );
    }
    add("token", task.token.to_string());
    add("created", when(Some(task.created_at)));
    add("updated", when(Some(task.updated_at)));
    add("started", when(task.started_at));
    add("finished", when(task.finished_at));
    add("data", pretty(&task.data));
    if let Some(o) = &task.output {
        add("output", pretty(o));
    }
    if let Some(e) = &task.error {
        add("error", format!("{}: {}", e.kind, e.message));
        if let Some(d) = &e.detail {
            add("detail", d.trim_end().to_string());
        }
    }
    let mut out = t.to_string();
    if !task.history.is_empty() {
        let mut h = table(&[
            "attempt", "stage", "worker", "started", "finished", "outcome", "error",
        ]);
        for a in &task.history {
            h.add_row(vec![
                a.attempt.to_string(),
                a.stage.clone().unwrap_or_default(),
                printable(&a.worker),
                when(Some(a.started)),
                when(Some(a.finished)),
                serde_json::to_value(a.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                a.error.as_ref().map_or(String::new(), |e| {
                    clip(&format!("{}: {}", e.kind, e.message), 50)
                }),
            ]);
        }
        out.push_str("\nhistory\n");
        out.push_str(&h.to_string());
    }
    out
}
