//! Binary entry point: everything lives in the library so tests and benches can reach it.

fn main() {
    std::process::exit(coding_bridge_agent::app::main());
}
