//! One file per command; [`dispatch`] is the only place that knows them all.
//!
//! Every command takes the [`Ctx`] (store, output, clock) and its parsed arguments and returns
//! the exit code on success; errors travel up as [`tasktrack::Error`] and become exit codes in
//! [`crate::exit::code`].

mod add;
mod admin;
mod completions;
mod export;
mod init;
mod job;
mod list;
mod report;
pub mod run;
mod show;
mod status;

use crate::args::Command;
use crate::output::Output;
use std::sync::Arc;
use tasktrack::{Clock, Result, Store, Timestamp};

pub use completions::completions;

/// What every command gets.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The opened store.
    pub store: Arc<dyn Store>,
    /// The URL it was opened from, password included: print it only through
    /// [`tasktrack::redact_url`].
    pub url: String,
    /// Where to write.
    pub out: Output,
    /// Where `now` comes from.
    pub clock: Arc<dyn Clock>,
}

impl Ctx {
    /// The current instant from the context's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// Runs one command (all but `completions`, which needs no store) and returns its exit code.
pub async fn dispatch(ctx: &Ctx, command: Command) -> Result<u8> {
    match command {
        Command::Init => init::init(ctx).await,
        Command::Job(cmd) => job::job(ctx, cmd).await,
        Command::Jobs(args) => job::jobs(ctx, args).await,
        Command::Add(args) => add::add(ctx, args).await,
        Command::Run(args) => run::run(ctx, args).await,
        Command::Status(args) => status::status(ctx, args).await,
        Command::List(args) => list::list(ctx, args).await,
        Command::Show(args) => show::show(ctx, args).await,
        Command::Retry(args) => admin::retry(ctx, args).await,
        Command::Ignore(args) => admin::ignore(ctx, args).await,
        Command::Delete(args) => admin::delete(ctx, args).await,
        Command::Purge(args) => admin::purge(ctx, args).await,
        Command::Export(args) => export::export(ctx, args).await,
        Command::Report(args) => report::report(ctx, args).await,
        Command::Completions(args) => completions(&ctx.out, args),
    }
}
