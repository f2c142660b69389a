//! `vnfs generate`: shell completions and man pages from the clap definition.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

/// What to generate.
#[derive(Subcommand, Debug)]
pub enum Generate {
    /// Shell completion script on stdout
    Completions {
        /// Target shell
        shell: clap_complete::Shell,
    },
    /// Man pages (vnfs.1 and one per subcommand) into a directory
    Man {
        /// Output directory
        #[arg(default_value = "man")]
        dir: PathBuf,
    },
}

/// Writes the requested completions or man pages.
pub fn run(what: Generate, cmd: &mut clap::Command) -> anyhow::Result<()> {
    match what {
        Generate::Completions { shell } => {
            clap_complete::generate(shell, cmd, "vnfs", &mut std::io::stdout());
        }
        Generate::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd.clone(), &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
        }
    }
    Ok(())
}
