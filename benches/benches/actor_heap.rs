//! B3's breakdown: where the heap of an activated guild actor goes, by allocation site.
//!
//! The subject: a `GuildRouter` (real `Services`: embedded store, empty cache, as B3's
//! activation) gets one MESSAGE_CREATE for each of N guilds it has no actor for; once every
//! actor has handled it and is idle, the process exits on the spot, so what is live at its
//! end is what the actors hold. The driver runs the subject twice under valgrind's DHAT
//! (N and 5 N guilds) and divides the difference of each site's live bytes by 4 N: what is
//! left is per guild, fixed costs cancel. A site is the first frame of the stack that is
//! not the allocator's, a collection's or the standard library's, with the workspace frame
//! that asked for it. Requested bytes, as B3's "heap per activated actor".
//!
//! `cargo bench -p protonn-benches --bench actor_heap -- [N]` (default 300; needs
//! valgrind). The subject uses the system allocator (no `#[global_allocator]`), which
//! valgrind intercepts; the requested sizes are the same under jemalloc.

#[path = "support/router.rs"]
mod router;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use router::{GUILD_BASE, all_handled, message, resident_router, route};
use serde_json::Value;

const WARM_UP: u64 = 100;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().position(|arg| arg == "subject") {
        Some(at) => subject(args[at + 1].parse().expect("subject <guilds>")),
        None => {
            let guilds = args.iter().find_map(|arg| arg.parse().ok()).unwrap_or(300);
            drive(guilds);
        }
    }
}

/// Activates `guilds` guild actors after a warm-up and exits once they are idle.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn subject(guilds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let router = resident_router(dir.path()).await;
    let mut wanted = 0;
    // The warm-up pays for lazily built statics, as in B3; then the measured guilds.
    for (first, count) in [(GUILD_BASE, WARM_UP), (GUILD_BASE + 1_000_000, guilds)] {
        let batch: Vec<_> = (0..count)
            .map(|i| message(first + i * 8, first + i))
            .collect();
        route(&router, batch).await;
        wanted += count as usize;
        all_handled(&router, wanted).await;
        // The tasks the handlings started (the workflows' load) end meanwhile.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // What is live now is the process's end for DHAT: no teardown frees anything.
    std::process::exit(0);
}

/// Runs the subject under DHAT with `guilds` and 5 × `guilds` and prints the sites' growth.
fn drive(guilds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let me = std::env::current_exe().unwrap();
    let run = |count: u64| -> HashMap<(String, String), (i64, i64)> {
        let out = dir.path().join(format!("dhat.{count}.json"));
        let status = Command::new("valgrind")
            .args([
                "--tool=dhat",
                "--num-callers=40",
                "--max-threads=3000",
                "--quiet",
            ])
            .arg(format!("--dhat-out-file={}", out.display()))
            .arg(&me)
            .args(["subject", &count.to_string()])
            .status()
            .expect("valgrind runs (apt install valgrind)");
        assert!(status.success(), "the subject failed under valgrind");
        live_at_end(&out)
    };
    let small = run(guilds);
    let large = run(guilds * 5);
    let per = (guilds * 4) as f64;
    let mut sites: Vec<((String, String), f64, f64)> = large
        .iter()
        .map(|(site, &(bytes, blocks))| {
            let (b0, n0) = small.get(site).copied().unwrap_or_default();
            (
                site.clone(),
                (bytes - b0) as f64 / per,
                (blocks - n0) as f64 / per,
            )
        })
        .collect();
    sites.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = sites.iter().map(|s| s.1).sum();
    let blocks: f64 = sites.iter().map(|s| s.2).sum();
    println!(
        "heap per activated guild actor, idle ({guilds} → {} guilds): {total:.0} B in {blocks:.1} allocations",
        guilds * 5
    );
    println!("| B per guild | allocations | made by | for |\n|---|---|---|---|");
    for ((made_by, wanted_by), bytes, blocks) in sites {
        if bytes.abs() >= 16.0 {
            println!("| {bytes:.0} | {blocks:.2} | `{made_by}` | `{wanted_by}` |");
        }
    }
}

/// Frames that say nothing about who wanted the memory.
const PLUMBING: [&str; 10] = [
    "std::",
    "core::",
    "alloc::",
    "<alloc::",
    "<core::",
    "<std::",
    "hashbrown::",
    "<hashbrown::",
    "malloc",
    "realloc",
];

/// Live bytes and blocks at the end of a DHAT heap profile, by site.
fn live_at_end(path: &Path) -> HashMap<(String, String), (i64, i64)> {
    let profile: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let frames: Vec<&str> = profile["ftbl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let mut sites: HashMap<(String, String), (i64, i64)> = HashMap::new();
    for point in profile["pps"].as_array().unwrap() {
        let bytes = point["eb"].as_i64().unwrap_or(0);
        if bytes == 0 {
            continue;
        }
        let symbols: Vec<&str> = point["fs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| symbol(frames[i.as_u64().unwrap() as usize]))
            .collect();
        let made_by = symbols
            .iter()
            .find(|s| !PLUMBING.iter().any(|p| s.starts_with(p)))
            .unwrap_or(&"?");
        let wanted_by = symbols
            .iter()
            .find(|s| s.contains("protonn_"))
            .unwrap_or(&"-");
        let entry = sites
            .entry((made_by.to_string(), wanted_by.to_string()))
            .or_default();
        entry.0 += bytes;
        entry.1 += point["ebk"].as_i64().unwrap_or(0);
    }
    sites
}

/// `0x1234: path::to::function (file.rs:12)` → `path::to::function`, without closures.
fn symbol(frame: &str) -> &str {
    let symbol = frame.split_once(": ").map_or(frame, |(_, s)| s);
    let symbol = symbol.rsplit_once(" (").map_or(symbol, |(s, _)| s);
    symbol.split("::{{closure}}").next().unwrap_or(symbol)
}
