//! The `demo-game` command line, built inside this package so that `demo_game_terminal.rs`
//! can start it (`CARGO_BIN_EXE_*` names only the tested package's own binaries).

fn main() -> std::process::ExitCode {
    demo_game::cli::main()
}
