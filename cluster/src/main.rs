/// jemalloc, tuned in .cargo/config.toml: in B1 and B2 it beat glibc's malloc on both CPU per
/// event and resident bytes per guild (benches/RESULTS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    protonn_cluster::cli::main()
}
