//! `report JOB ID --success|--failure [--detail TEXT]`: count an outcome without running anything.

use super::Ctx;
use crate::args::ReportArgs;
use crate::parse;
use tasktrack::{Report, Result};

/// Records the outcome and prints the task as written.
pub async fn report(ctx: &Ctx, args: ReportArgs) -> Result<u8> {
    let key = parse::key(&parse::job(&args.job)?, &args.id)?;
    let req = Report {
        success: args.success && !args.failure,
        detail: args.detail.clone(),
    };
    let task = ctx.store.report(&key, &req, ctx.now()).await?;
    ctx.out.emit(&task, || {
        format!(
            "{key}: {} (attempt {} of {})",
            task.status, task.attempts, task.max_attempts
        )
    })?;
    Ok(crate::exit::OK)
}
