//! `vnfs build`: build an image from a recipe. Parses arguments, calls
//! `vnfs_builder::build`, draws progress bars and prints the result.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use anyhow::Context as _;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use vnfs_builder::progress::{Progress, Stage};

use crate::context::Context;

/// What `vnfs build --help` shows after the options: the recipe's shape.
pub const AFTER_HELP: &str = "\
A recipe is a TOML file (every key: docs/recipes.md; examples: recipes/):
  [image]   os, version, release, arch, state (stateless|stateful), name
            (default <os>-<version>-<release>.<state>.<arch>)
  [source.debian] suite, packages, variant, mirror, keyring, exclude ...
    or [source.rpm], [source.tar] (a root tarball), [source.dir]
  [[step]]  remove, copy + to, write + content, run (network = true), enable
  [vnfs]    kernel_args, hybridize, livesync_skip, nodescripts

The first successful build writes <recipe>.lock beside the recipe; later
builds install exactly the lock (same lock, same image, bit for bit) until
--update. Packages are cached by sha256 in $VNFS_HOME/cache/packages.
With -q only the commit id is printed.";

/// Build an image from a recipe (see docs/recipes.md).
#[derive(clap::Args, Debug)]
pub struct Build {
    /// The recipe file (TOML)
    pub recipe: PathBuf,
    /// Resolve packages again even if `<recipe>.lock` exists
    #[arg(long)]
    pub update: bool,
    /// Build into this directory (empty or absent) and keep it
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Do not commit the result to the store (use with --output-dir)
    #[arg(long, requires = "output_dir")]
    pub no_commit: bool,
}

struct Bars {
    multi: MultiProgress,
    bars: Mutex<Vec<(Stage, ProgressBar)>>,
    quiet: bool,
}

impl Bars {
    fn new(quiet: bool) -> Bars {
        let target = if quiet || !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(Vec::new()),
            quiet,
        }
    }

    fn bar(&self, stage: Stage) -> Option<ProgressBar> {
        let bars = self.bars.lock().ok()?;
        bars.iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, b)| b.clone())
    }
}

impl Progress for Bars {
    fn begin(&self, stage: Stage, total: Option<u64>) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        if let Some((_, b)) = bars.iter().find(|(s, _)| *s == stage) {
            if let Some(t) = total {
                b.set_length(t);
            }
            return;
        }
        let style = match (stage, total) {
            (Stage::Download, _) => ProgressStyle::with_template(
                "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            ),
            (_, Some(_)) => {
                ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {msg}")
            }
            (_, None) => ProgressStyle::with_template("{prefix:>9} {spinner} {elapsed} {msg}"),
        }
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let b = self.multi.add(match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        });
        b.set_style(style);
        b.set_prefix(stage.label());
        if total.is_none() {
            b.enable_steady_tick(std::time::Duration::from_millis(120));
        }
        bars.push((stage, b));
    }

    fn advance(&self, stage: Stage, n: u64) {
        if let Some(b) = self.bar(stage) {
            b.inc(n);
        }
    }

    fn message(&self, stage: Stage, msg: &str) {
        if let Some(b) = self.bar(stage) {
            b.set_message(msg.to_string());
        }
    }

    fn end(&self, stage: Stage) {
        if let Some(b) = self.bar(stage) {
            b.finish_with_message("done");
        }
        let _ = self.quiet;
    }
}

/// Runs the build.
pub fn run(args: Build, ctx: &Context) -> anyhow::Result<()> {
    // The builder checks the flag between phases.
    let cancel = crate::interrupt::catch();
    let recipe = vnfs_builder::recipe::Recipe::load(&args.recipe)?;
    let mut opts = vnfs_builder::build::BuildOptions::new(&ctx.home);
    opts.update = args.update;
    opts.output_dir = args.output_dir.clone();
    opts.commit = !args.no_commit;
    let bars = Arc::new(Bars::new(ctx.quiet));
    let start = std::time::Instant::now();
    let built = vnfs_builder::build::build(&recipe, &opts, bars.as_ref(), cancel)
        .with_context(|| format!("building {}", args.recipe.display()))?;
    let secs = start.elapsed().as_secs_f64();
    if ctx.json {
        let out = serde_json::json!({
            "name": built.name,
            // A temporary root is gone by now: only a kept one is named.
            "root": args.output_dir.as_ref().map(|_| &built.root),
            "packages": built.packages.len(),
            "source_date_epoch": built.source_date_epoch,
            "lock_written": built.lock_written,
            "seconds": secs,
            "commit": built.commit.map(|c| c.to_string()),
        });
        println!("{out}");
    } else if ctx.quiet {
        // What a script wants from a quiet build, as `vnfs commit` prints.
        if let Some(c) = &built.commit {
            println!("{c}");
        }
    } else {
        println!(
            "built {} ({} packages) in {:.1} s",
            built.name,
            built.packages.len(),
            secs
        );
        if let Some(c) = &built.commit {
            println!("commit {c}");
        }
        if built.lock_written {
            println!("wrote {}", recipe.lock_path().display());
        }
        if args.output_dir.is_some() {
            println!("root: {}", built.root.display());
        }
    }
    Ok(())
}
