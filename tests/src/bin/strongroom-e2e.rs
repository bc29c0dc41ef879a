//! The `strongroom` program, built inside this package so that the end-to-end tests can spawn
//! the real process (`env!("CARGO_BIN_EXE_strongroom-e2e")`): same entry point, same behaviour.

fn main() -> std::process::ExitCode {
    gateway::cli::main()
}
