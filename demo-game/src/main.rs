//! `demo-game`: not built yet; see the project's issues. Prints usage and exits.

fn main() {
    eprintln!("demo-game: not implemented yet. See README.md for what Tickwire offers today.");
    std::process::exit(2);
}
