//! `completions SHELL`: a completion script generated from the clap definitions.

use crate::args::{Cli, CompletionsArgs};
use crate::output::Output;
use clap::CommandFactory;
use tasktrack::{Error, Result};

/// Prints the script for `args.shell` on stdout.
pub fn completions(out: &Output, args: CompletionsArgs) -> Result<u8> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "tasktrack", &mut buf);
    let text = String::from_utf8(buf)
        .map_err(|e| Error::backend(format!("completion script is not UTF-8: {e}")))?;
    out.print(&text)?;
    Ok(crate::exit::OK)
}
