use clap::Parser;

// glibc's malloc was a fifth of the crawl's CPU (page bodies and result
// buffers of 20-100 KB churn its bins); mimalloc's per-thread free lists
// serve the same pattern for a fraction (ARCHITECTURE.md, "Allocator").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = spinneret::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = runtime.block_on(spinneret::cli::main(cli));
    // Work is finished or handed back by now; a blocking call still running
    // (a plugin call past its deadline) must not hold the exit.
    runtime.shutdown_timeout(spinneret::timeouts::EXIT_WAIT);
    match result {
        Ok(code) => std::process::ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
