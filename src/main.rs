//! The `vnfs` command line: argument parsing, progress and output only.
//! Every command lives in `cmd/`, and calls into the library crates.

mod cmd;
mod context;
mod interrupt;
mod progress;

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
    #[command(after_help = cmd::build::AFTER_HELP)]
    Build(cmd::build::Build),
    /// Ingest a root directory as a new version of an image; prints the commit id
    Commit(cmd::image::CommitArgs),
    /// Materialise a version of an image into a directory, exactly
    Checkout(cmd::image::CheckoutArgs),
    /// List images and their newest version
    List,
    /// Show an image's history, newest first
    Log(cmd::image::LogArgs),
    /// Show a version: files, logical size, chunks, bytes unique to it, metadata
    Show(cmd::image::ShowArgs),
    /// Delete images (their space is freed by `vnfs store gc`)
    Delete(cmd::image::DeleteArgs),
    /// Move an image back to an earlier version (recorded in its history)
    Rollback(cmd::image::RollbackArgs),
    /// Packages and paths added, removed, changed between two versions, and bytes needed
    Diff(cmd::image::DiffArgs),
    /// Mount an image read-write through FUSE; `vnfs umount` commits the edits
    Mount(cmd::mount::MountArgs),
    /// Unmount an image and commit its edits as a new version (or --discard)
    Umount(cmd::mount::UmountArgs),
    /// List mounted images and their pending changes
    Mounts,
    /// Serve a mount (started by `vnfs mount`)
    #[command(hide = true)]
    MountServer(cmd::mount::ServerArgs),
    /// Store maintenance: stats, fsck, gc
    #[command(subcommand)]
    Store(cmd::store::StoreCmd),
    /// Render a version of an image as squashfs, cpio (initramfs) or tar
    Image(cmd::render::ImageArgs),
    /// Write an image (or the difference from a base) as a .vnfs capsule
    Export(cmd::capsule::ExportArgs),
    /// Check a .vnfs capsule completely, add its objects, then set the image
    Import(cmd::capsule::ImportArgs),
    /// Look into capsule files
    #[command(subcommand)]
    Capsule(cmd::capsule::CapsuleCmd),
    /// Signing keys for capsules
    #[command(subcommand)]
    Key(cmd::capsule::KeyCmd),
    /// Print shell completions or the man page, generated from this definition.
    #[command(subcommand)]
    Generate(cmd::generate::Generate),
    /// Write vnfs.conf and defaults.conf, asking Perceus's first-run questions
    Init(Box<cmd::init::InitArgs>),
    /// Add, set, delete, replace, list and import nodes
    #[command(subcommand)]
    Node(cmd::node::NodeCmd),
    /// Set and show groups of nodes
    #[command(subcommand)]
    Group(cmd::group::GroupCmd),
    /// Import, activate and list provisioning modules
    #[command(subcommand)]
    Module(cmd::module::ModuleCmd),
    /// Print the script the daemon sends a node at a provisionary state
    Nodescript(cmd::nodescript::NodescriptArgs),
    /// Write configuration for the services vnfs uses (dnsmasq)
    #[command(subcommand)]
    Configure(cmd::configure::ConfigureCmd),
    /// Run the provisioning daemon: check-ins, objects, boot files
    Serve(cmd::serve::ServeArgs),
    /// Move running nodes of an image to its newest version without a reboot
    Livesync(cmd::livesync::LivesyncArgs),
    /// Check an image's hybridize list, build its export, report node memory saved
    Hybridize(cmd::hybridize::HybridizeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let ctx = Context::new(&cli.global);
    if prints_data(&cli.command) {
        die_quietly_on_closed_pipe();
    }
    let result = match cli.command {
        Command::Build(b) => cmd::build::run(b, &ctx),
        Command::Commit(a) => cmd::image::commit(a, &ctx),
        Command::Checkout(a) => cmd::image::checkout(a, &ctx),
        Command::List => cmd::image::list(&ctx),
        Command::Log(a) => cmd::image::log(a, &ctx),
        Command::Show(a) => cmd::image::show(a, &ctx),
        Command::Delete(a) => cmd::image::delete(a, &ctx),
        Command::Rollback(a) => cmd::image::rollback(a, &ctx),
        Command::Diff(a) => cmd::image::diff(a, &ctx),
        Command::Mount(a) => cmd::mount::mount(a, &ctx),
        Command::Umount(a) => cmd::mount::umount(a, &ctx),
        Command::Mounts => cmd::mount::mounts(&ctx),
        Command::MountServer(a) => cmd::mount::server(a, &ctx),
        Command::Store(c) => cmd::store::run(c, &ctx),
        Command::Image(a) => cmd::render::run(a, &ctx),
        Command::Export(a) => cmd::capsule::export(a, &ctx),
        Command::Import(a) => cmd::capsule::import(a, &ctx),
        Command::Capsule(c) => cmd::capsule::capsule(c, &ctx),
        Command::Key(c) => cmd::capsule::key(c, &ctx),
        Command::Generate(g) => cmd::generate::run(g, &mut Cli::command()),
        Command::Init(a) => cmd::init::run(&ctx, *a),
        Command::Node(c) => cmd::node::run(&ctx, c),
        Command::Group(c) => cmd::group::run(&ctx, c),
        Command::Module(c) => cmd::module::run(&ctx, c),
        Command::Nodescript(a) => cmd::nodescript::run(&ctx, a),
        Command::Configure(c) => cmd::configure::run(&ctx, c),
        Command::Serve(a) => cmd::serve::run(&ctx, a),
        Command::Livesync(a) => cmd::livesync::run(&ctx, a),
        Command::Hybridize(a) => cmd::hybridize::run(&ctx, a),
    };
    context::finish(result)
}

/// Commands that only read and print: their output goes into pipes such
/// as `| head`, which may close early. (The node, group and module
/// commands that write the database are not among them.)
fn prints_data(c: &Command) -> bool {
    matches!(
        c,
        Command::List
            | Command::Log(_)
            | Command::Show(_)
            | Command::Diff(_)
            | Command::Mounts
            | Command::Capsule(_)
            | Command::Generate(_)
            | Command::Nodescript(_)
            | Command::Hybridize(_)
            | Command::Node(
                cmd::node::NodeCmd::List { .. }
                    | cmd::node::NodeCmd::Summary { .. }
                    | cmd::node::NodeCmd::Status { .. }
                    | cmd::node::NodeCmd::Show { .. }
            )
            | Command::Group(cmd::group::GroupCmd::List { .. } | cmd::group::GroupCmd::Show { .. })
            | Command::Module(cmd::module::ModuleCmd::List)
    )
}

/// Makes a write to a closed pipe end the process silently, as with other
/// Unix tools, instead of failing (or panicking in `println!`). Only for
/// commands that print data: the daemon, the mount server and builds keep
/// Rust's default, where a closed socket or child pipe is an error they
/// handle.
fn die_quietly_on_closed_pipe() {
    // SAFETY: restoring a signal's default disposition has no
    // memory-safety preconditions; no handler is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
