fn main() -> std::process::ExitCode {
    protonn_cluster::cli::main()
}
