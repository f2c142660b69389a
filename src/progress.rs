//! indicatif bars behind the store's `Progress` trait. Bars draw on stderr
//! and only when stdout is a terminal, so scripted output stays clean.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar that follows the phases a library operation reports.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar, hidden unless stdout is a terminal and not `--quiet`.
    pub fn new(quiet: bool) -> Bar {
        let target = if !quiet && std::io::stdout().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bar {
            bar: ProgressBar::with_draw_target(None, target),
        }
    }
}

impl vnfs_store::Progress for Bar {
    fn cancelled(&self) -> bool {
        crate::interrupt::requested()
    }

    fn phase(&self, name: &str, total: Option<u64>, bytes: bool) {
        let template = match (total.is_some(), bytes) {
            (true, true) => {
                "{msg:>14} [{bar:36}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
            }
            (true, false) => "{msg:>14} [{bar:36}] {pos}/{len} eta {eta}",
            (false, true) => "{spinner} {msg:>12} {bytes} {binary_bytes_per_sec}",
            (false, false) => "{spinner} {msg:>12} {pos}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_length(total.unwrap_or(0));
        self.bar.set_position(0);
        self.bar.set_message(name.to_string());
        self.bar
            .enable_steady_tick(std::time::Duration::from_millis(120));
    }

    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `1.2 GiB`-style sizes.
pub fn bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}
