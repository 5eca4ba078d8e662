//! The `oxkit-init` binary: everything lives in the library (see its crate docs); this only
//! hands over the arguments and exits with the code it gets (never, as PID 1).

fn main() {
    std::process::exit(oxkit_init::main_entry(std::env::args_os().collect()));
}
