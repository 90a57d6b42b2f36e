//! Operations: the metrics catalog (`docs/metrics.md`), the Grafana dashboards and the alert
//! rules of `dashboards/`, checked with promtool and against a real Prometheus scraping a
//! running node and a running coordinator.
//!
//! Both run in this process and so share its Prometheus recorder: each target exports the
//! other's series too. What is checked is that every catalogued metric is served, as the
//! catalog describes it; that a node process alone exports no coordinator metric is checked
//! by `tests/tests/processes.rs`, whose processes are separate.
//!
//! Prometheus and promtool come from Debian (`scripts/install-ops-tools`). Without them the
//! test fails under CI (`CI` set) and is skipped with a notice elsewhere.
//!
//! At the end every dashboard is drawn over this run's data (`query_range` of each panel's
//! queries) by `scripts/render-dashboards`, Pro-tonn's own drawing of the panels, not Grafana's,
//! and screenshotted by Chromium into `target/tmp/dashboard-images/<dashboard>.png` (CI keeps
//! them); panels with no data are drawn as such and listed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protonn_cluster::{
    ClusterToken, Coordinator, CoordinatorOptions, CoordinatorStore, DiscordEndpoint,
};
use protonn_shard::BotToken;
use protonn_sim::SimConfig;
use protonn_tests::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What Grafana's built-in interval variables stand for here: windows that hold several
/// samples at the test's 1 s scrape interval.
const BUILTINS: [(&str, &str); 5] = [
    ("__rate_interval", "15s"),
    ("__interval", "5s"),
    ("__range_s", "300"),
    ("__range", "5m"),
    ("__interval_ms", "5000"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_alerts_and_catalog_hold_against_a_real_prometheus() {
    let Some(tools) = Tools::find() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let dashboards = root.join("dashboards");
    let catalog = Catalog::load(&root.join("docs/metrics.md"));
    let mut problems = catalog.problems.clone();

    // Alert rules: syntax, then their unit tests.
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new(&tools.promtool)
            .args(args)
            .current_dir(&dashboards)
            .output()
            .unwrap();
        if !out.status.success() {
            problems.push(format!(
                "promtool {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }

    // A node with traffic and fast heartbeats, so every existing series has moved.
    let sim = start_sim(SimConfig {
        heartbeat_interval_ms: 500,
        messages_per_sec: 20.0,
        ..small_world(2, 40)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let node = start_node(&sim, dir.path(), &recorder).await;
    wait_all_ready(&node).await;
    let guild = some_guild(&sim, 0);
    wait_until("the guild is known to its actor", || async {
        recorder.guilds_created().contains(&guild.id)
    })
    .await;
    sim.send_message(guild.id, guild.channel_ids[0], guild.member_ids[0], "!ping")
        .unwrap();
    reply_in(&sim, guild.channel_ids[0], 0).await;
    wait_until("a heartbeat round trip is measured", || async {
        http_get(node.ops_addr(), "/metrics")
            .await
            .1
            .contains("protonn_shard_heartbeat_latency_seconds{")
    })
    .await;

    // A coordinator on the same simulator, leading alone; no node joins it.
    let coordinator_dir = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(CoordinatorOptions {
        name: "coordinator-0".to_owned(),
        failure_timeout: Duration::from_secs(5),
        ..CoordinatorOptions::loopback(
            DiscordEndpoint::Simulator(sim.rest_proxy()),
            BotToken::new(sim.config().token.clone()),
            ClusterToken::new("ops-test-token").unwrap(),
            ClusterToken::new("ops-test-operator").unwrap(),
            CoordinatorStore::Embedded(coordinator_dir.path().to_owned()),
        )
    })
    .await
    .unwrap();
    assert_eq!(http_get(coordinator.ops_addr(), "/healthz").await.0, 200);
    wait_until("the coordinator leads", || async {
        http_get(coordinator.ops_addr(), "/leader").await.0 == 200
    })
    .await;

    // Each exposition: promtool's lint; then the catalog, both ways, over both.
    let targets = [
        ("node", node.ops_addr(), "protonn-node-0"),
        (
            "coordinator",
            coordinator.ops_addr(),
            "protonn-coordinator-0",
        ),
    ];
    let mut expositions = Vec::new();
    for (target, addr, _) in targets {
        let (status, exposition) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200, "{target} /metrics");
        let mut lint = Command::new(&tools.promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        lint.stdin
            .take()
            .unwrap()
            .write_all(exposition.as_bytes())
            .unwrap();
        let lint = lint.wait_with_output().unwrap();
        if !lint.status.success() {
            problems.push(format!(
                "promtool check metrics on the {target}'s /metrics: {}{}",
                String::from_utf8_lossy(&lint.stdout),
                String::from_utf8_lossy(&lint.stderr)
            ));
        }
        expositions.push((target, Exposition::parse(&exposition)));
        if target == "coordinator" && !exposition.contains("\nprotonn_coordinator_leader 1\n") {
            problems.push("the leading coordinator's protonn_coordinator_leader is not 1".into());
        }
    }
    problems.extend(catalog.compare(&expositions));

    // Prometheus on loopback, scraping both every second and evaluating the rules.
    let prom = Prometheus::start(&tools, &targets, &dashboards.join("alerts.yml"));
    wait_until(
        "Prometheus has scraped both targets several times",
        || async {
            let found = prom
                .query(
                    "count(count_over_time(up{job=\"protonn\"}[1m]) >= 5 \
                 and up{job=\"protonn\"} == 1) == 2",
                )
                .await;
            found.is_ok_and(|result| !result.is_empty())
        },
    )
    .await;

    let mut report = Vec::new();
    let files = dashboard_files(&dashboards);
    for file in &files {
        let board: Value = match serde_json::from_str(&std::fs::read_to_string(file).unwrap()) {
            Ok(board) => board,
            Err(err) => {
                problems.push(format!("{}: not JSON: {err}", file.display()));
                continue;
            }
        };
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        check_dashboard(&name, &board, &catalog, &prom, &mut problems, &mut report).await;
    }
    let alert_tests = std::fs::read_to_string(dashboards.join("alerts_test.yml")).unwrap();
    check_rules(&catalog, &prom, &alert_tests, &mut problems, &mut report).await;
    if crate::dashboard::browser_installed() {
        // Enough history for the images to show lines, not dots: rates over
        // `$__rate_interval` (15 s) only settle once that much has been scraped.
        wait_until("Prometheus holds 20 s of scrapes to draw", || async {
            let expr = "min(count_over_time(up{job=\"protonn\"}[1m])) >= 20";
            prom.query(expr)
                .await
                .is_ok_and(|result| !result.is_empty())
        })
        .await;
        draw_dashboards(&root, &files, &prom, &mut problems, &mut report).await;
    }

    println!("ops check:\n  {}", report.join("\n  "));
    prom.stop();
    drop(coordinator);
    node.shutdown().await;
    sim.shutdown().await;
    assert!(
        problems.is_empty(),
        "{} problem(s):\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
}

/// Every panel of a dashboard (rows and collapsed rows included) and every template variable.
async fn check_dashboard(
    name: &str,
    board: &Value,
    catalog: &Catalog,
    prom: &Prometheus,
    problems: &mut Vec<String>,
    report: &mut Vec<String>,
) {
    let variables: Vec<&Value> = board["templating"]["list"]
        .as_array()
        .map(|list| list.iter().collect())
        .unwrap_or_default();
    let defined = variable_names(board);
    for var in ["namespace", "node"] {
        if !defined.contains(var) {
            problems.push(format!("{name}: no template variable `{var}`"));
        }
    }
    for variable in variables {
        if variable["type"] != "query" {
            continue;
        }
        let var_name = variable["name"].as_str().unwrap_or("?");
        let what = format!("{name}: variable `{var_name}`");
        let definition = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .unwrap_or_default();
        // Grafana's `label_values(selector, label)` lists what `group by (label)` returns.
        let Some(expr) = definition
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|inner| inner.rsplit_once(','))
            .map(|(selector, label)| format!("group by ({}) ({selector})", label.trim()))
        else {
            problems.push(format!("{what}: not a label_values() query: {definition}"));
            continue;
        };
        check_expr(&what, &expr, &defined, catalog, prom, problems, report).await;
    }
    let mut panels = Vec::new();
    collect_panels(&board["panels"], &mut panels);
    if panels.is_empty() {
        problems.push(format!("{name}: no panels"));
    }
    for panel in panels {
        let what = format!(
            "{name}: panel \"{}\"",
            panel["title"].as_str().unwrap_or("?")
        );
        if panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            problems.push(format!("{what}: no unit"));
        }
        if panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{what}: data source is not ${{datasource}}"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{what}: no queries"));
        }
        for target in targets {
            let Some(expr) = target["expr"].as_str() else {
                problems.push(format!("{what}: a target without expr"));
                continue;
            };
            let what = format!("{what} {}", target["refId"].as_str().unwrap_or("?"));
            check_expr(&what, expr, &defined, catalog, prom, problems, report).await;
        }
    }
}

/// The names of a dashboard's template variables.
fn variable_names(board: &Value) -> BTreeSet<String> {
    board["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

/// Each dashboard drawn over Prometheus's data since it started: every panel's queries as
/// `query_range` returns them, written to `data.json`, drawn by `scripts/render-dashboards`
/// into `target/tmp/dashboard-images/<dashboard>.png`. Fails when an image is not made.
async fn draw_dashboards(
    root: &Path,
    files: &[PathBuf],
    prom: &Prometheus,
    problems: &mut Vec<String>,
    report: &mut Vec<String>,
) {
    let end = unix_now();
    let mut dashboards = Vec::new();
    for file in files {
        let Ok(board) = serde_json::from_str::<Value>(&std::fs::read_to_string(file).unwrap())
        else {
            continue; // reported by check_dashboard
        };
        let defined = variable_names(&board);
        let mut all = Vec::new();
        collect_panels(&board["panels"], &mut all);
        let mut panels = serde_json::Map::new();
        for panel in all {
            let mut targets = Vec::new();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let Some(Ok(expr)) = target["expr"].as_str().map(|e| substitute(e, &defined))
                else {
                    continue; // reported by check_dashboard
                };
                match prom.query_range(&expr, prom.started, end).await {
                    Ok(result) => targets.push(json!({"refId": target["refId"], "result": result})),
                    Err(err) => problems.push(format!("query_range {expr}: {err}")),
                }
            }
            panels.insert(panel["id"].to_string(), Value::Array(targets));
        }
        dashboards.push(json!({"file": file, "panels": panels}));
    }
    let images = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-images");
    std::fs::create_dir_all(&images).unwrap();
    let data = images.join("data.json");
    let data_json = json!({"start": prom.started, "end": end, "dashboards": dashboards});
    std::fs::write(&data, data_json.to_string()).unwrap();
    let drawn = Command::new("python3")
        .arg(root.join("scripts/render-dashboards"))
        .arg(&data)
        .arg(&images)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&drawn.stdout);
    if !drawn.status.success() {
        problems.push(format!(
            "scripts/render-dashboards failed: {stdout}{}",
            String::from_utf8_lossy(&drawn.stderr)
        ));
        return;
    }
    for file in files {
        let png = images.join(file.with_extension("png").file_name().unwrap());
        match png_size(&png) {
            Some((width, height)) if width > 0 && height > 0 => {
                report.push(format!("image {} ({width}x{height})", png.display()))
            }
            other => problems.push(format!("{}: not a PNG image ({other:?})", png.display())),
        }
    }
    report.extend(
        stdout
            .lines()
            .filter(|line| line.starts_with("no data: "))
            .map(|line| format!("drawn with {line}")),
    );
}

/// Width and height from a PNG's header, None when it is not a PNG.
fn png_size(path: &Path) -> Option<(u32, u32)> {
    let bytes = std::fs::read(path).ok()?;
    let header = bytes.get(..24)?;
    let be = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().unwrap());
    (header[..8] == *b"\x89PNG\r\n\x1a\n" && header[12..16] == *b"IHDR").then(|| (be(16), be(20)))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn collect_panels<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
    for panel in panels.as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            collect_panels(&panel["panels"], out);
        } else {
            out.push(panel);
        }
    }
}

/// One query: its variables are defined, its metrics catalogued, it parses, and over
/// existing metrics it returns data.
async fn check_expr(
    what: &str,
    expr: &str,
    defined: &BTreeSet<String>,
    catalog: &Catalog,
    prom: &Prometheus,
    problems: &mut Vec<String>,
    report: &mut Vec<String>,
) {
    let expr = match substitute(expr, defined) {
        Ok(expr) => expr,
        Err(undefined) => {
            problems.push(format!("{what}: undefined variable ${undefined}"));
            return;
        }
    };
    let planned = match catalog.classify(&expr) {
        Ok(planned) => planned,
        Err(unknown) => {
            problems.push(format!(
                "{what}: metric `{unknown}` is not in docs/metrics.md"
            ));
            return;
        }
    };
    match prom.query(&expr).await {
        Err(err) => problems.push(format!("{what}: {err}\n    {expr}")),
        Ok(_) if !planned.is_empty() => report.push(format!(
            "{what}: parses; over planned {}",
            planned.iter().cloned().collect::<Vec<_>>().join(", ")
        )),
        Ok(result) if result.is_empty() => {
            problems.push(format!("{what}: returns no data\n    {expr}"))
        }
        Ok(result) => report.push(format!("{what}: {} series", result.len())),
    }
}

/// Replaces `$var`, `${var}` and `[[var]]`: Grafana's interval built-ins by fixed windows,
/// template variables by their All value `.*`. Err names an undefined variable.
fn substitute(expr: &str, defined: &BTreeSet<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(start) = rest.find(['$', '[']) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let (name, len) = if let Some(braced) = tail.strip_prefix("${") {
            let end = braced.find('}').ok_or_else(|| tail.to_owned())?;
            let name = braced[..end].split(':').next().unwrap_or_default();
            (name, end + 3)
        } else if let Some(bracketed) = tail.strip_prefix("[[") {
            let end = bracketed.find("]]").ok_or_else(|| tail.to_owned())?;
            (&bracketed[..end], end + 4)
        } else if let Some(plain) = tail.strip_prefix('$') {
            let end = plain
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(plain.len());
            (&plain[..end], end + 1)
        } else {
            out.push('[');
            rest = &tail[1..];
            continue;
        };
        if let Some((_, value)) = BUILTINS.iter().find(|(builtin, _)| *builtin == name) {
            out.push_str(value);
        } else if defined.contains(name) {
            out.push_str(".*");
        } else {
            return Err(name.to_owned());
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The rules as Prometheus loaded and evaluated them: healthy, catalogued, unit-tested, and
/// over existing metrics each selector finds series.
async fn check_rules(
    catalog: &Catalog,
    prom: &Prometheus,
    alert_tests: &str,
    problems: &mut Vec<String>,
    report: &mut Vec<String>,
) {
    let evaluated = |rules: &[Value]| {
        !rules.is_empty()
            && rules
                .iter()
                .all(|r| r["lastEvaluation"].as_str() != Some("0001-01-01T00:00:00Z"))
    };
    wait_until("Prometheus has evaluated every rule", || async {
        evaluated(&prom.rules().await)
    })
    .await;
    for rule in prom.rules().await {
        let name = rule["name"].as_str().unwrap_or("?");
        let what = format!("alert {name}");
        let query = rule["query"].as_str().unwrap_or_default();
        if rule["health"] != "ok" {
            problems.push(format!(
                "{what}: health {}: {}",
                rule["health"], rule["lastError"]
            ));
        }
        if !alert_tests.contains(&format!("alertname: {name}\n")) {
            problems.push(format!("{what}: no unit test in alerts_test.yml"));
        }
        let planned = match catalog.classify(query) {
            Ok(planned) => planned,
            Err(unknown) => {
                problems.push(format!(
                    "{what}: metric `{unknown}` is not in docs/metrics.md"
                ));
                continue;
            }
        };
        if let Err(err) = prom.query(query).await {
            problems.push(format!("{what}: {err}"));
            continue;
        }
        if !planned.is_empty() {
            report.push(format!(
                "{what}: healthy; over planned {}",
                planned.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
            continue;
        }
        // An alert is empty while it does not fire: what must exist is every series it reads.
        for token in metric_tokens(query) {
            match prom.query(&token).await {
                Ok(series) if !series.is_empty() => {}
                other => problems.push(format!("{what}: `{token}` has no series: {other:?}")),
            }
        }
        report.push(format!("{what}: healthy; its metrics have series"));
    }
}

/// Our own metrics, and the standard `process_*` ones of the Prometheus client libraries.
const METRIC_PREFIXES: [&str; 2] = ["protonn_", "process_"];

/// The `protonn_*` and `process_*` names a query mentions, as written (`_bucket` included).
fn metric_tokens(expr: &str) -> BTreeSet<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    expr.split(|c: char| !is_name(c))
        .filter(|word| METRIC_PREFIXES.iter().any(|p| word.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

fn dashboard_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
}

/// One row of docs/metrics.md.
#[derive(Debug)]
struct Entry {
    kind: String,
    labels: BTreeSet<String>,
    planned: bool,
    buckets: Option<Vec<f64>>,
}

/// docs/metrics.md, parsed, with what is wrong in it.
struct Catalog {
    entries: BTreeMap<String, Entry>,
    problems: Vec<String>,
}

impl Catalog {
    fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap();
        let mut entries = BTreeMap::new();
        let mut problems = Vec::new();
        for line in text.lines() {
            if let Some(row) = line
                .strip_prefix("| `")
                .filter(|row| METRIC_PREFIXES.iter().any(|p| row.starts_with(p)))
            {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let name = cells[0].trim_end_matches('`').to_owned();
                if cells.len() < 6 {
                    problems.push(format!("catalog: row of {name} has too few columns"));
                    continue;
                }
                let labels = cells[3]
                    .split(',')
                    .map(|label| label.trim().trim_matches('`').to_owned())
                    .filter(|label| !label.is_empty() && label != "—")
                    .collect();
                let entry = Entry {
                    kind: cells[1].to_owned(),
                    labels,
                    planned: cells[4].starts_with("planned"),
                    buckets: None,
                };
                if !cells[4].starts_with("planned") && cells[4] != "exists" {
                    problems.push(format!(
                        "catalog: {name}: status is `exists` or `planned (#N)`"
                    ));
                }
                if cells[5].is_empty() {
                    problems.push(format!("catalog: {name}: no meaning"));
                }
                problems.extend(naming_problems(&name, &entry.kind));
                if entries.insert(name.clone(), entry).is_some() {
                    problems.push(format!("catalog: {name} listed twice"));
                }
            } else if let Some(rest) = line.strip_prefix("- Buckets of `") {
                let (name, list) = rest.split_once("`: ").unwrap_or((rest, ""));
                let list = list.split(" (").next().unwrap_or_default();
                let buckets: Result<Vec<f64>, _> =
                    list.split(',').map(|b| b.trim().parse::<f64>()).collect();
                match (entries.get_mut(name), buckets) {
                    (Some(entry), Ok(buckets)) => entry.buckets = Some(buckets),
                    (None, _) => problems.push(format!("catalog: buckets of unknown {name}")),
                    (_, Err(err)) => problems.push(format!("catalog: buckets of {name}: {err}")),
                }
            }
        }
        for (name, entry) in &entries {
            if entry.kind == "histogram" && entry.buckets.is_none() {
                problems.push(format!("catalog: histogram {name} has no buckets"));
            }
        }
        assert!(entries.len() > 10, "the catalog table was not found");
        for name in ["protonn_build_info", "process_cpu_seconds_total"] {
            assert!(entries.contains_key(name), "{name} is not in the catalog");
        }
        Self { entries, problems }
    }

    /// Ok: the planned metrics `expr` reads (empty when all exist). Err: one it reads that the
    /// catalog does not know.
    fn classify(&self, expr: &str) -> Result<BTreeSet<String>, String> {
        let mut planned = BTreeSet::new();
        for token in metric_tokens(expr) {
            let entry = self.entries.get(&token).or_else(|| {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .filter_map(|suffix| token.strip_suffix(suffix))
                    .filter_map(|base| self.entries.get(base))
                    .find(|entry| entry.kind == "histogram")
            });
            match entry {
                None => return Err(token),
                Some(entry) if entry.planned => {
                    planned.insert(token);
                }
                Some(_) => {}
            }
        }
        Ok(planned)
    }

    /// What differs between the catalog and what the targets export: each exported metric
    /// must be catalogued as it is exported; each one marked `exists`, exported by a target.
    fn compare(&self, targets: &[(&str, Exposition)]) -> Vec<String> {
        let mut problems = Vec::new();
        for (target, exported) in targets {
            for (name, family) in &exported.families {
                let Some(entry) = self.entries.get(name) else {
                    problems.push(format!(
                        "the {target}'s /metrics exports {name}, which is not in docs/metrics.md"
                    ));
                    continue;
                };
                if entry.planned {
                    problems.push(format!(
                        "{name} is exported by the {target} but marked planned in docs/metrics.md: \
                         mark it exists"
                    ));
                }
                if family.help.is_empty() {
                    problems.push(format!("{name} has no description (# HELP)"));
                }
                if family.kind != entry.kind {
                    problems.push(format!(
                        "{name} is a {} on the {target}'s /metrics, a {} in the catalog",
                        family.kind, entry.kind
                    ));
                }
                for labels in &family.label_sets {
                    if *labels != entry.labels {
                        problems.push(format!(
                            "{name} has labels {labels:?} on the {target}'s /metrics, {:?} in \
                             the catalog",
                            entry.labels
                        ));
                        break;
                    }
                }
                if let Some(buckets) = &entry.buckets
                    && family.buckets != *buckets
                {
                    problems.push(format!(
                        "{name} has buckets {:?} on the {target}'s /metrics, {buckets:?} in the \
                         catalog",
                        family.buckets
                    ));
                }
            }
        }
        for (name, entry) in &self.entries {
            let served = targets
                .iter()
                .any(|(_, exported)| exported.families.contains_key(name));
            if !entry.planned && !served {
                problems.push(format!(
                    "{name} is marked exists in docs/metrics.md but on no target's /metrics"
                ));
            }
        }
        problems
    }
}

/// The naming rules of docs/metrics.md.
fn naming_problems(name: &str, kind: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let parts: Vec<&str> = name.split('_').collect();
    if parts.len() < 3
        || parts.iter().any(|part| part.is_empty())
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        problems.push(format!(
            "catalog: {name} is not protonn_<area>_<what>_<unit>"
        ));
    }
    match kind {
        "counter" if !name.ends_with("_total") => {
            problems.push(format!("catalog: counter {name} does not end in _total"))
        }
        "gauge" | "histogram" if name.ends_with("_total") => {
            problems.push(format!("catalog: {kind} {name} ends in _total"))
        }
        "counter" | "gauge" | "histogram" => {}
        other => problems.push(format!("catalog: {name} has unknown type {other}")),
    }
    problems
}

/// A metric family as the Prometheus text exposition shows it.
#[derive(Default, Debug)]
struct Family {
    kind: String,
    help: String,
    label_sets: BTreeSet<BTreeSet<String>>,
    buckets: Vec<f64>,
}

struct Exposition {
    families: BTreeMap<String, Family>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                families.entry(name.to_owned()).or_default().kind = kind.trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                families.entry(name.to_owned()).or_default().help = help.trim().to_owned();
            }
        }
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let series = &line[..end];
            let labels = parse_labels(&line[end..]);
            let (family, suffix) = ["_bucket", "_sum", "_count", ""]
                .iter()
                .find_map(|suffix| {
                    let base = series.strip_suffix(suffix)?;
                    families
                        .contains_key(base)
                        .then(|| (base.to_owned(), *suffix))
                })
                .unwrap_or_else(|| (series.to_owned(), ""));
            let family = families.entry(family).or_default();
            let mut names: BTreeSet<String> = labels.keys().cloned().collect();
            if suffix == "_bucket" {
                names.remove("le");
                if let Some(le) = labels.get("le").and_then(|le| le.parse::<f64>().ok())
                    && le.is_finite()
                    && !family.buckets.contains(&le)
                {
                    family.buckets.push(le);
                }
            }
            family.label_sets.insert(names);
        }
        for family in families.values_mut() {
            family.buckets.sort_by(f64::total_cmp);
        }
        Self { families }
    }
}

/// `{a="x",b="y"} 1` → {a: x, b: y}.
fn parse_labels(rest: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let Some(body) = rest.strip_prefix('{') else {
        return labels;
    };
    let mut chars = body.chars();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let name = name.trim_start_matches(',').trim().to_owned();
        if name.is_empty() || name.starts_with('}') || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(name, value);
    }
    labels
}

/// Where prometheus and promtool are.
struct Tools {
    prometheus: PathBuf,
    promtool: PathBuf,
}

impl Tools {
    /// None (with a notice) when they are absent outside CI; a panic under CI.
    fn find() -> Option<Self> {
        let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin");
        let search = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain([local]);
        let dirs: Vec<PathBuf> = search.collect();
        let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
        match (find("prometheus"), find("promtool")) {
            (Some(prometheus), Some(promtool)) => Some(Self {
                prometheus,
                promtool,
            }),
            _ if std::env::var_os("CI").is_some() => {
                panic!("prometheus and promtool are not installed: run scripts/install-ops-tools")
            }
            _ => {
                eprintln!(
                    "NOTICE: ops check skipped: prometheus and promtool are not installed \
                     (scripts/install-ops-tools installs them; under CI this fails)"
                );
                None
            }
        }
    }
}

/// A Prometheus server on a free loopback port with its own temp dir; killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    /// When it was started (Unix seconds): where its data begins.
    started: f64,
}

impl Prometheus {
    /// Scrapes each `(_, address, pod)` of `targets`.
    fn start(tools: &Tools, targets: &[(&str, SocketAddr, &str)], rules: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // The static labels stand in for what a Kubernetes ServiceMonitor adds, and `cluster`
        // for what a multi-cluster Prometheus (Thanos, Mimir) adds.
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: protonn\n    static_configs:\n",
            rules = rules.display()
        );
        for (_, target, pod) in targets {
            config.push_str(&format!(
                "      - targets: ['{target}']\n\
                 \x20       labels: {{cluster: e2e, namespace: protonn-e2e, pod: {pod}}}\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(&tools.prometheus)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            child,
            addr,
            dir,
            started: unix_now(),
        }
    }

    /// The result vector of an instant query; Err carries Prometheus's error (a parse error,
    /// say) or a connection failure.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        self.result(&format!("/api/v1/query?query={}", percent_encode(expr)))
            .await
    }

    /// The result matrix of a range query from `start` to `end` (Unix seconds), one point a
    /// second (the scrape interval).
    async fn query_range(&self, expr: &str, start: f64, end: f64) -> Result<Vec<Value>, String> {
        self.result(&format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step=1",
            percent_encode(expr)
        ))
        .await
    }

    async fn result(&self, path: &str) -> Result<Vec<Value>, String> {
        let body = self.get(path).await?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Every loaded rule, flattened over groups.
    async fn rules(&self) -> Vec<Value> {
        let body = self.get("/api/v1/rules").await.unwrap_or_default();
        body["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// HTTP/1.0, so that the answer is never chunked.
    async fn get(&self, path: &str) -> Result<Value, String> {
        let log = || std::fs::read_to_string(self.dir.path().join("prometheus.log"));
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|err| format!("connecting to Prometheus: {err}; log: {:?}", log()))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            stream.read_to_string(&mut response),
        )
        .await
        .map_err(|_| "Prometheus did not answer within 10 s".to_owned())?
        .map_err(|err| err.to_string())?;
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        serde_json::from_str(body).map_err(|err| format!("{err}: {response}"))
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn grafana_variables_are_substituted_and_undefined_ones_named() {
    let defined: BTreeSet<String> = ["namespace", "node"].map(str::to_owned).into();
    assert_eq!(
        substitute(
            "rate(x{namespace=~\"$namespace\", pod=~\"${node}\"}[$__rate_interval])",
            &defined
        ),
        Ok("rate(x{namespace=~\".*\", pod=~\".*\"}[15s])".to_owned())
    );
    assert_eq!(
        substitute("x{a=~\"[[node]]\"}[5m]", &defined),
        Ok("x{a=~\".*\"}[5m]".to_owned())
    );
    assert_eq!(
        substitute("x{shard=~\"$shard\"}", &defined),
        Err("shard".to_owned())
    );
}

#[test]
fn the_exposition_parser_finds_families_labels_and_buckets() {
    let text = "# HELP h wait\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\n\
                h_sum 0\nh_count 0\n# HELP c n\n# TYPE c counter\nc{a=\"x,\\\"y\",b=\"z\"} 1\n";
    let parsed = Exposition::parse(text);
    assert_eq!(parsed.families["h"].buckets, [1.0]);
    assert_eq!(parsed.families["h"].label_sets, [BTreeSet::new()].into());
    let labels: BTreeSet<String> = ["a", "b"].map(str::to_owned).into();
    assert_eq!(parsed.families["c"].label_sets, [labels].into());
    assert_eq!(parsed.families["c"].kind, "counter");
}
