//! The `rustnet` binary: everything is in the library.

fn main() -> std::process::ExitCode {
    rustnet::main()
}
