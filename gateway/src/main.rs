//! The `strongroom` binary.

/// mimalloc: the request path allocates many small, short-lived objects from several threads,
/// which glibc's allocator serves markedly slower (measured: `bench/README.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gateway::cli::main()
}
