//! The `vnfs` command line: argument parsing, progress and output only.
//! Every command lives in `cmd/`, and calls into the library crates.

mod cmd;
mod context;

use clap::{CommandFactory, Parser, Subcommand};
use context::{Context, GlobalArgs};

/// Reproducible, content-addressed cluster node images.
///
/// vnfs builds node images from distro packages, keeps every version in a
/// deduplicated chunk store, and ships and provisions them.
#[derive(Parser, Debug)]
#[command(name = "vnfs", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build an image from a recipe.
    Build(cmd::build::Build),
    /// Print shell completions or the man page, generated from this definition.
    #[command(subcommand)]
    Generate(cmd::generate::Generate),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let ctx = Context::new(&cli.global);
    let result = match cli.command {
        Command::Build(b) => cmd::build::run(b, &ctx),
        Command::Generate(g) => cmd::generate::run(g, &mut Cli::command()),
    };
    context::finish(result)
}
