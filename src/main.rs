//! Binary entry point: everything lives in the library so tests and benches can reach it.

fn main() {
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|a| a == coding_bridge_agent::GUARD_ARG)
    {
        // The per-child guard the daemon starts (see `sys/guard.rs`), not a user command.
        std::process::exit(coding_bridge_agent::guard_main(args.collect()));
    }
    std::process::exit(coding_bridge_agent::main());
}
