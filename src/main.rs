//! The `vnfs` command line: argument parsing, progress and output only.

fn main() {
    println!("vnfs");
}
