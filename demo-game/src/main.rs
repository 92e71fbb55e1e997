//! `demo-game`: see `demo-game --help` and `demo-game/README.md`.

use std::process::ExitCode;

fn main() -> ExitCode {
    demo_game::cli::main()
}
