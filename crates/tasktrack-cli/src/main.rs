//! `tasktrack`: parse and delegate (see the `tasktrack_cli` crate docs and `docs/cli.md`).

fn main() -> std::process::ExitCode {
    tasktrack_cli::main()
}
