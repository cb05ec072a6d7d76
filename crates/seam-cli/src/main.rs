//! The `seam` command line; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    seam_cli::cli::main()
}
