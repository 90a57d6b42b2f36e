//! Compiles the cluster protos with the vendored `protoc`, so a fresh machine needs none; and
//! names the git commit for `protonn_build_info` (`unknown` outside a git checkout, e.g. in
//! an image built from a source tarball).

use std::path::PathBuf;
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &[
            "proto/protonn/cluster/v1/cluster.proto",
            "proto/protonn/cluster/v1/guilds.proto",
        ],
        &["proto"],
    )?;
    println!("cargo:rustc-env=PROTONN_COMMIT={}", commit());
    // Naming any file replaces cargo's default (rerun on any change in the package), so the
    // protos are named too. A new commit or a checkout changes the git files; only existing
    // ones may be named, or cargo would run this script on every build.
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
    for path in ["HEAD", "packed-refs"]
        .into_iter()
        .map(str::to_owned)
        .chain(git(&["symbolic-ref", "-q", "HEAD"]))
        .filter_map(|name| git(&["rev-parse", "--git-path", &name]).map(PathBuf::from))
        .filter(|path| path.exists())
    {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=PROTONN_COMMIT");
    Ok(())
}

/// `PROTONN_COMMIT` when set (an image build without `.git`), else git's short hash.
fn commit() -> String {
    std::env::var("PROTONN_COMMIT")
        .ok()
        .filter(|commit| !commit.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}
