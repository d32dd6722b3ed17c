use clap::Parser;

// The engine's per-connection records are tiny and short-lived handshake buffers come and go by
// the thousand; mimalloc returns freed pages to the OS and keeps RSS near what is live.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    c1m::sys::disable_transparent_huge_pages();
    // A preset's values become flags placed before the user's own, so the user's win.
    let argv = match c1m::preset::splice(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("c1m: {e}");
            std::process::exit(2);
        }
    };
    let cli = c1m::cli::Cli::parse_from(argv);
    match c1m::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("c1m: {e:#}");
            std::process::exit(2);
        }
    }
}
