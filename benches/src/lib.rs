//! Benchmarks of `../shared/BENCHMARKS.md`. Micro-benchmarks live in `benches/` (criterion);
//! the scenario runner for B1–B8 against the simulator comes with the benchmarks issue.
