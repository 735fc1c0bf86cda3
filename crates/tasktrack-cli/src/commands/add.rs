//! `add JOB [ID...] [--file F | -]`: bulk, idempotent task creation.
//!
//! Every id (and every JSON line) is validated before the first write, so a bad line 40,000
//! leaves the store untouched. Duplicates within the input are created once. Writes go in
//! batches of [`BATCH`] so a huge file never becomes one giant transaction.

use super::Ctx;
use crate::args::AddArgs;
use crate::parse;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::Read;
use tasktrack::{
    CreateMode, Created, Error, JobName, NewTask, Refusal, Result, Status, Task, TaskId, TaskKey,
    TaskQuery,
};

/// Tasks per `create` call.
pub const BATCH: usize = 1_000;

/// Creates the tasks and prints how many were new.
pub async fn add(ctx: &Ctx, args: AddArgs) -> Result<u8> {
    let job = parse::job(&args.job)?;
    if args.max_attempts == Some(0) {
        return Err(Error::invalid("--max-attempts must be at least 1"));
    }
    let defaults = NewTask {
        id: TaskId::new("-")?,
        data: args
            .data
            .as_deref()
            .map(|d| parse::json("data", d))
            .transpose()?
            .unwrap_or(Value::Null),
        priority: args.priority.unwrap_or(0),
        max_attempts: args.max_attempts,
        not_before: None,
    };
    let tasks = collect(&args, &defaults)?;
    if tasks.is_empty() {
        return Err(Error::invalid(
            "no task ids: give them as arguments, with --file FILE, or `-` to read stdin",
        ));
    }
    // What the store refuses in a task (data nesting too deep, say), before the first batch is
    // written, so that a refused task late in a big file leaves the store untouched.
    for task in &tasks {
        tasktrack::lifecycle::check_new_task(&job, task)?;
    }
    if args.replace && !args.force {
        refuse_to_replace_running(ctx, &job, &tasks).await?;
    }
    let mode = if args.replace {
        CreateMode::Replace
    } else {
        CreateMode::SkipExisting
    };
    let mut total = Created::default();
    for chunk in tasks.chunks(BATCH) {
        let c = ctx.store.create(&job, chunk, mode, ctx.now()).await?;
        total.created += c.created;
        total.existing += c.existing;
        total.replaced += c.replaced;
    }
    let doc = json!({ "job": job, "created": total.created, "existing": total.existing, "replaced": total.replaced });
    ctx.out.emit(&doc, || {
        let mut s = format!(
            "{job}: {} created, {} already there",
            total.created, total.existing
        );
        if args.replace {
            s.push_str(&format!(", {} replaced", total.replaced));
        }
        s
    })?;
    Ok(crate::exit::OK)
}

/// Refuses a `--replace` (before anything is written) that would take tasks from workers running
/// them: a replaced task starts afresh and its holder is fenced out, its command's result
/// rejected when it ends, while the task may already run again elsewhere. `--force` says that
/// is meant. Checked against the job's tasks in progress when the command starts (a claim made
/// after that is replaced all the same: the check spares the common mistake, re-adding an id
/// file while a run works through it, without a lock).
async fn refuse_to_replace_running(ctx: &Ctx, job: &JobName, tasks: &[NewTask]) -> Result<()> {
    let adding: HashSet<&TaskId> = tasks.iter().map(|t| &t.id).collect();
    let now = ctx.now();
    let mut query = TaskQuery::new(job.clone()).with_statuses([Status::InProgress]);
    query.limit = tasktrack::MAX_LIMIT;
    let running = |t: &Task| adding.contains(&t.id) && t.has_live_lease(now);
    let held = tasktrack::tasks_where(ctx.store.as_ref(), query, running).await?;
    let Some(first) = held.first() else {
        return Ok(());
    };
    let lease = first.lease.as_ref();
    let reason = Refusal::Locked {
        owner: lease.map(|l| l.owner.clone()).unwrap_or_default(),
        expires_at: lease.map_or(now, |l| l.expires_at),
    };
    ctx.out.note(format!(
        "tasktrack: {} task(s) to replace are running under a live lease (replacing one fences \
         its worker out and starts it afresh while it still runs); nothing was added: wait for \
         them, or add --force to replace them anyway",
        held.len()
    ));
    Err(Error::Refused {
        key: TaskKey::new(job.clone(), first.id.clone()).to_string(),
        reason,
    })
}

/// Every task from the arguments, then the file or stdin, de-duplicated (first one wins).
fn collect(args: &AddArgs, defaults: &NewTask) -> Result<Vec<NewTask>> {
    let mut tasks = Vec::new();
    let mut from_stdin = false;
    for id in &args.ids {
        if id == "-" {
            from_stdin = true;
        } else {
            tasks.push(NewTask {
                id: TaskId::new(id.as_str())?,
                ..defaults.clone()
            });
        }
    }
    if from_stdin && let Some(path) = args.file.as_deref().filter(|p| *p != "-") {
        return Err(Error::invalid(format!(
            "`-` reads ids from stdin and --file {path:?} from a file: give one of them"
        )));
    }
    let source = match args.file.as_deref() {
        Some("-") => Some(("stdin".to_string(), read_stdin()?)),
        Some(path) => Some((
            path.to_string(),
            std::fs::read(path)
                .map_err(|e| Error::invalid(format!("cannot read --file {path:?}: {e}")))?,
        )),
        None if from_stdin => Some(("stdin".to_string(), read_stdin()?)),
        None => None,
    };
    if let Some((name, bytes)) = source {
        // A byte order mark (Windows editors write one) is no part of the first id.
        let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(&bytes);
        for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
            let line = std::str::from_utf8(line).map_err(|e| {
                Error::invalid(format!(
                    "{name}:{}: not valid UTF-8 (at byte {} of the line); ids must be UTF-8 text",
                    n + 1,
                    e.valid_up_to() + 1
                ))
            })?;
            if let Some(task) = parse::task_line(line, n + 1, &name, defaults)? {
                tasks.push(task);
            }
        }
    }
    let mut seen = HashSet::new();
    tasks.retain(|t| seen.insert(t.id.clone()));
    Ok(tasks)
}

/// The UTF-8 encoding of U+FEFF, the byte order mark some editors put at the start of a file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

fn read_stdin() -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| Error::invalid(format!("cannot read ids from stdin: {e}")))?;
    Ok(bytes)
}
