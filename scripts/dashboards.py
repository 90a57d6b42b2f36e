#!/usr/bin/env python3
"""Writes the Grafana dashboards in dashboards/*.json, the files operators import.

The JSON is generated so that every dashboard shares the same variables, data source and
layout; edit this file, run `python3 scripts/dashboards.py`, commit both. `--check` (run by
scripts/check-ops) fails when the JSON files differ from what this script writes. Every query
is checked against a real Prometheus by the e2e test `ops`; metric names: docs/metrics.md.
"""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DS = {"type": "prometheus", "uid": "${datasource}"}
# `cluster` (the label a multi-cluster Prometheus, Thanos or Mimir adds) and `job` (the scrape
# job: the chart's ServiceMonitor names it after the Service). With All (`.*`) they also match
# series without the label, so a single-cluster Prometheus needs nothing more.
NS = 'cluster=~"$cluster", job=~"$job", namespace=~"$namespace"'
# Node pods: what `namespace` and `node` select. Coordinator pods get their own filter.
SEL = NS + ', pod=~"$node"'
SHARD_SEL = SEL + ', shard=~"$shard"'
# Per-shard panels show the busiest shards only: a 2,500-shard bot would draw 2,500 lines.
TOPK = 10


def variables(*names):
    """Template variables: the data source, then namespace → node → shard, each multi-valued
    with an All that matches everything (`allValue` `.*`, so selectors use `=~`)."""
    out = [{
        "name": "datasource", "label": "Data source", "type": "datasource",
        "query": "prometheus", "hide": 0,
    }]
    queries = {
        "cluster": "label_values(protonn_build_info, cluster)",
        "job": 'label_values(protonn_build_info{cluster=~"$cluster"}, job)',
        "namespace": 'label_values(protonn_build_info{cluster=~"$cluster", job=~"$job"}, namespace)',
        "node": f"label_values(protonn_shard_state_shards{{{NS}}}, pod)",
        "shard": f"label_values(protonn_shard_dispatches_total{{{SEL}}}, shard)",
        "coordinator": f"label_values(protonn_coordinator_leader{{{NS}}}, pod)",
    }
    labels = {"cluster": "Cluster", "job": "Job", "namespace": "Namespace", "node": "Node",
              "shard": "Shard", "coordinator": "Coordinator"}
    for name in ("cluster", "job") + names:
        out.append({
            "name": name, "label": labels[name], "type": "query", "datasource": DS,
            "query": {"query": queries[name], "refId": f"{name}-values"},
            "refresh": 2, "sort": 3,
            "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "hide": 0,
        })
    return {"list": out}


class Board:
    def __init__(self, uid, title, description, variables):
        self.uid, self.title, self.description = uid, title, description
        self.variables = variables
        self.panels = []
        self.next_id = 1
        self.y = 0
        self.x = 0
        self.row = None

    def _id(self):
        self.next_id += 1
        return self.next_id - 1

    def row_start(self, title, collapsed=False):
        """A row; a collapsed row holds its panels inside itself, as Grafana stores them."""
        self._newline()
        row = {"id": self._id(), "type": "row", "title": title, "collapsed": collapsed,
               "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []}
        self.panels.append(row)
        self.row = row if collapsed else None
        self.y += 1

    def _newline(self):
        if self.x:
            self.x = 0
            self.y += 8

    def panel(self, title, unit, targets, kind="timeseries", width=12, description="",
              stack=False, decimals=None, thresholds=None):
        """`targets`: (expr, legend) pairs. `unit`: a Grafana unit id. `thresholds`: colour
        steps `[(value, colour), ...]` from the lowest, the first value None (the base);
        without them every value is green (Grafana's default turns everything above 80 red).
        A time series draws its thresholds as dashed lines when there is more than the base."""
        if self.x + width > 24:
            self._newline()
        steps = thresholds or [(None, "green")]
        defaults = {"unit": unit, "color": {"mode": "thresholds" if kind == "stat" else "palette-classic"},
                    "thresholds": {"mode": "absolute",
                                   "steps": [{"value": v, "color": c} for v, c in steps]}}
        if decimals is not None:
            defaults["decimals"] = decimals
        if kind == "timeseries":
            defaults["custom"] = {"drawStyle": "line", "fillOpacity": 10 if not stack else 40,
                                  "lineWidth": 1, "showPoints": "never",
                                  "stacking": {"mode": "normal" if stack else "none"},
                                  "thresholdsStyle": {"mode": "dashed" if len(steps) > 1 else "off"}}
            options = {"legend": {"showLegend": True, "displayMode": "table",
                                  "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                       "tooltip": {"mode": "multi", "sort": "desc"}}
        else:
            options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                       "colorMode": "value", "graphMode": "area", "textMode": "auto",
                       "justifyMode": "auto", "orientation": "auto", "wideLayout": True,
                       "showPercentChange": False, "percentChangeColorMode": "standard"}
        panel = {
            "id": self._id(), "type": kind, "title": title, "description": description,
            "datasource": DS,
            "gridPos": {"h": 8, "w": width, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options,
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr,
                 "legendFormat": legend, "range": True}
                for i, (expr, legend) in enumerate(targets)
            ],
        }
        (self.row["panels"] if self.row else self.panels).append(panel)
        self.x += width
        if self.x >= 24:
            self._newline()

    def json(self):
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": ["protonn"], "editable": True, "graphTooltip": 1,
            "schemaVersion": 39, "version": 1, "refresh": "30s", "timezone": "browser",
            "time": {"from": "now-6h", "to": "now"},
            "annotations": {"list": []}, "links": [
                {"type": "dashboards", "tags": ["protonn"], "asDropdown": True,
                 "title": "Pro-tonn", "includeVars": True, "keepTime": True,
                 "icon": "external link", "targetBlank": False, "tooltip": ""}],
            "templating": self.variables, "panels": self.panels,
        }


def rate(metric, sel=SEL, by=None, window="$__rate_interval"):
    inner = f"rate({metric}{{{sel}}}[{window}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def topk(expr):
    return f"topk({TOPK}, {expr})"


def quantile(q, metric, sel=SEL, by="le"):
    return (f"histogram_quantile({q}, sum by ({by}) "
            f"(rate({metric}_bucket{{{sel}}}[$__rate_interval])))")


def overview():
    b = Board("protonn-overview", "Pro-tonn / Overview",
              "Is the bot up and answering: shards, events, commands, replies.",
              variables("namespace", "node", "shard"))
    b.panel("Shards ready", "short", [
        (f'sum(protonn_shard_state_shards{{{SEL}, state="ready"}})', "ready")],
        kind="stat", width=6, thresholds=[(None, "blue")])
    b.panel("Shards not ready", "short", [
        (f'sum(protonn_shard_state_shards{{{SEL}, state!="ready"}})', "not ready")],
        kind="stat", width=6, thresholds=[(None, "green"), (1, "orange")],
        description="Orange while any shard is not ready: normal during a cold start, an "
                    "outage when it lasts (ProtonnShardDown).")
    b.panel("Guild actors", "short", [
        (f"sum(protonn_actors_guilds_active{{{SEL}}})", "actors")], kind="stat", width=6,
        thresholds=[(None, "blue")])
    b.panel("Identify budget left", "short", [
        (f"min(protonn_shard_identify_budget_remaining{{{NS}}})", "session starts")],
        kind="stat", width=6, thresholds=[(None, "red"), (100, "orange"), (1000, "green")],
        description="Red near the reserve (restarts stall); below the bot's shard count "
                    "ProtonnIdentifyBudgetLow fires: a full restart would not fit.")
    b.panel("Gateway events/s", "ops", [
        (rate("protonn_shard_dispatches_total", SHARD_SEL, "pod"), "{{pod}}")])
    b.panel("Commands/s by outcome", "ops", [
        (rate("protonn_actors_commands_handled_total", SEL, "outcome"), "{{outcome}}")],
        stack=True)
    b.panel("Discord REST requests/s by outcome", "reqps", [
        (rate("protonn_rest_requests_total", SEL, "outcome"), "{{outcome}}")], stack=True)
    b.panel("Shards by state", "short", [
        (f"sum by (state) (protonn_shard_state_shards{{{SEL}}})", "{{state}}")], stack=True)
    b.panel("Reconnects and resumes/s", "ops", [
        (rate("protonn_shard_reconnects_total", SHARD_SEL), "reconnects"),
        (rate("protonn_shard_resumes_total", SHARD_SEL), "resumes"),
        (rate("protonn_shard_identifies_total", SHARD_SEL), "identifies")])
    b.panel("Guild actor failures/s", "ops", [
        (rate("protonn_actors_guild_failures_total", SEL, "pod"), "{{pod}}")])
    web(b)
    processes(b)
    return b


def web(b):
    """The dashboard (`protonn web` pods, and `protonn demo`): requests, answer time,
    logins, refusals and the guild calls it makes. Every pod of the namespace, not only the
    nodes: the web pods are not nodes."""
    b.row_start("Dashboard (protonn web)")
    b.panel("Dashboard requests/s by status", "reqps", [
        (rate("protonn_web_requests_total", NS, "status"), "{{status}}")], width=8, stack=True)
    b.panel("Dashboard answer time p95 by route", "s", [
        (quantile(0.95, "protonn_web_request_duration_seconds", NS, "le, route"), "{{route}}")],
        width=8, thresholds=[(None, "green"), (0.05, "orange")],
        description="Server time of a page, guild calls included; B10's target is 50 ms at "
                    "the 95th percentile. Empty routes were not asked for.")
    b.panel("Logins/s by outcome", "ops", [
        (rate("protonn_web_logins_total", NS, "outcome"), "{{outcome}}")], width=8)
    b.panel("Refused requests/s by reason", "reqps", [
        (rate("protonn_web_rejected_total", NS, "reason"), "{{reason}}")], width=8,
        description="Forged or reused login states, missing CSRF tokens, other users' guilds, "
                    "oversized forms, expired sessions: each refused and counted here.")
    b.panel("Guild call time p99 by request", "s", [
        (quantile(0.99, "protonn_guild_call_duration_seconds", NS, "le, request"),
         "{{request}}")], width=8,
        description="For every caller (the dashboard, nodes, the CLI): routing and retries "
                    "across a shard move included.")
    b.panel("Guild call errors/s", "ops", [
        (f"sum by (request, outcome) (rate(protonn_guild_calls_total"
         f'{{{NS}, outcome!="ok"}}[$__rate_interval]))', "{{request}} {{outcome}}")], width=8)


def processes(b):
    """CPU, memory and restarts of every Pro-tonn pod (nodes and coordinators)."""
    b.row_start("Processes")
    b.panel("CPU by pod", "percentunit", [
        (f"sum by (pod) (rate(process_cpu_seconds_total{{{NS}}}[$__rate_interval]))", "{{pod}}")],
        width=8, description="Cores in use (1 = one full core), from /proc.")
    b.panel("Resident memory by pod", "bytes", [
        (f"max by (pod) (process_resident_memory_bytes{{{NS}}})", "{{pod}}")], width=8)
    b.panel("Restarts by pod (1h)", "short", [
        (f"sum by (pod) (changes(process_start_time_seconds{{{NS}}}[1h]))", "{{pod}}")],
        width=8, thresholds=[(None, "green"), (1, "orange"), (3, "red")],
        description="Process restarts seen in the last hour (its start time changed). "
                    "A node restart costs an IDENTIFY per shard unless it drained first.")
    b.panel("Open file descriptors by pod", "short", [
        (f"max by (pod) (process_open_fds{{{NS}}})", "{{pod}}"),
        (f"min(process_max_fds{{{NS}}})", "limit")], width=8)
    b.panel("Versions running", "short", [
        (f"count by (version, commit) (protonn_build_info{{{NS}}})", "{{version}} {{commit}}")],
        width=8, description="More than one line during a rollout.")


def shards():
    b = Board("protonn-shards", "Pro-tonn / Shards and identify budget",
              "Gateway shards: state, traffic, latency, reconnects, and the IDENTIFY budget.",
              variables("namespace", "node", "shard"))
    b.row_start("Shards")
    b.panel("Shards by state", "short", [
        (f"sum by (pod, state) (protonn_shard_state_shards{{{SEL}}})", "{{pod}} {{state}}")])
    b.panel(f"Events/s, busiest {TOPK} shards", "ops", [
        (topk(rate("protonn_shard_dispatches_total", SHARD_SEL, "shard")), "shard {{shard}}")])
    b.panel(f"Heartbeat latency, slowest {TOPK} shards", "s", [
        (topk(f"max by (shard) (protonn_shard_heartbeat_latency_seconds{{{SHARD_SEL}}})"),
         "shard {{shard}}")], thresholds=[(None, "green"), (1, "orange"), (5, "red")],
        description="Discord's own latency is ~0.1 s; seconds mean a loaded node or network.")
    b.panel("Events/s by type", "ops", [
        (rate("protonn_shard_events_received_total", SEL, "event"), "{{event}}")])
    b.panel("Reconnects/s by reason", "ops", [
        (rate("protonn_shard_reconnects_total", SHARD_SEL, "reason"), "{{reason}}")])
    b.panel("Resumed share of resumable reconnects (30m)", "percentunit", [
        (f"sum(increase(protonn_shard_resumes_total{{{SHARD_SEL}}}[30m])) / "
         f"sum(increase(protonn_shard_reconnects_total{{{SHARD_SEL}, "
         f'reason!="session_close"}}[30m]))', "resumed")],
        description="Below 90 % the ProtonnResumeRateLow alert fires. Empty without reconnects.",
        thresholds=[(None, "red"), (0.9, "green")])
    b.panel("Fatal closes by code (1h)", "short", [
        (f"sum by (code) (increase(protonn_shard_fatal_closes_total{{{SEL}}}[1h]))",
         "{{code}}")], kind="stat", thresholds=[(None, "green"), (1, "red")])
    b.panel("Buffer: events shed/s and stalls/s", "ops", [
        (rate("protonn_shard_events_shed_total", SEL, "event"), "shed {{event}}"),
        (topk(rate("protonn_shard_buffer_stalls_total", SHARD_SEL, "shard")),
         "stalls shard {{shard}}")])
    b.row_start("Identify budget")
    b.panel("Daily budget remaining", "short", [
        (f"min by (pod) (protonn_shard_identify_budget_remaining{{{NS}}})", "{{pod}}"),
        (f"sum(protonn_shard_state_shards{{{NS}, state!=\"stopped\"}})", "shards (a full restart)")],
        description="Below the shards line a full restart would not fit in the day "
                    "(ProtonnIdentifyBudgetLow).")
    b.panel("Requests held back at the reserve", "short", [
        (f"max by (pod) (protonn_shard_identify_blocked_requests{{{NS}}})", "{{pod}}")],
        thresholds=[(None, "green"), (1, "red")])
    b.panel("Identifies/s by reason", "ops", [
        (rate("protonn_shard_identifies_total", SHARD_SEL, "reason"), "{{reason}}")])
    b.panel("Identify wait (p50, p99)", "s", [
        (quantile(0.5, "protonn_shard_identify_wait_seconds"), "p50"),
        (quantile(0.99, "protonn_shard_identify_wait_seconds"), "p99")])
    return b


def actors():
    b = Board("protonn-actors", "Pro-tonn / Guild actors",
              "Guild actors: residency, commands, failures, mailboxes and passivation.",
              variables("namespace", "node"))
    b.panel("Guild actors resident", "short", [
        (f"sum by (pod) (protonn_actors_guilds_active{{{SEL}}})", "{{pod}}")])
    b.panel("Commands/s by command", "ops", [
        (rate("protonn_actors_commands_handled_total", SEL, "command"), "{{command}}")])
    b.panel("Command outcomes other than ok/s", "ops", [
        (f"sum by (command, outcome) (rate(protonn_actors_commands_handled_total"
         f'{{{SEL}, outcome!="ok"}}[$__rate_interval]))', "{{command}} {{outcome}}")])
    b.panel("Guild actor failures/s", "ops", [
        (rate("protonn_actors_guild_failures_total", SEL, "pod"), "{{pod}}")])
    b.panel("Guild actors started and passivated/s", "ops", [
        (rate("protonn_actors_guild_spawns_total", SEL), "started"),
        (rate("protonn_actors_passivations_total", SEL, "reason"), "passivated {{reason}}")])
    b.panel("Events not delivered to full mailboxes/s", "ops", [
        (rate("protonn_actors_events_shed_total", SEL, "event, action"), "{{action}} {{event}}")],
        description="Above 1/s for 5 minutes the ProtonnMailboxSaturation alert fires.")
    b.panel("Events queued in guild mailboxes", "short", [
        (f"sum by (pod) (protonn_actors_mailbox_queued_events{{{SEL}}})", "{{pod}} all"),
        (f"max by (pod) (protonn_actors_mailbox_deepest_events{{{SEL}}})", "{{pod}} fullest")],
        description="Queued events of every guild actor, and of the fullest mailbox. "
                    "A mailbox past its limit sheds typing and presence.")
    b.panel("Event handling time (p50, p99)", "s", [
        (quantile(0.5, "protonn_actors_event_handling_duration_seconds"), "p50"),
        (quantile(0.99, "protonn_actors_event_handling_duration_seconds"), "p99")],
        thresholds=[(None, "green"), (1, "orange")],
        description="Per event, retries included. Seconds mean slow storage or a panic loop.")
    b.panel("Event panics and dead letters/s", "ops", [
        (rate("protonn_actors_event_panics_total", SEL), "panics"),
        (rate("protonn_actors_dead_letters_total", SEL), "dead letters")])
    b.row_start("Mailbox overflow (guild actor runtime, issue #5)", collapsed=True)
    b.panel("Events queued past a mailbox's limit/s", "ops", [
        (rate("protonn_actors_mailbox_overflow_total", SEL, "event"), "{{event}}")],
        description="Events that are never dropped, queued beyond the bound.")
    return b


def storage():
    b = Board("protonn-storage", "Pro-tonn / Storage",
              "Repository calls by outcome, failures by kind, latency by repository and "
              "method, and retention.",
              variables("namespace", "node"))
    b.panel("Calls/s by repository", "ops", [
        (rate("protonn_storage_operations_total", SEL, "backend, repo"), "{{backend}} {{repo}}")])
    b.panel("Error ratio", "percentunit", [
        (f"{rate('protonn_storage_errors_total', SEL, 'pod')} / "
         f"{rate('protonn_storage_operations_total', SEL, 'pod')}", "{{pod}}")],
        description="Above 1 % for 5 minutes the ProtonnStorageErrors alert fires.",
        thresholds=[(None, "green"), (0.01, "red")])
    b.panel("Errors/s by kind", "ops", [
        (rate("protonn_storage_errors_total", SEL, "backend, kind"), "{{backend}} {{kind}}")])
    b.panel("Call latency p99 by repository", "s", [
        (quantile(0.99, "protonn_storage_operation_duration_seconds", SEL, "le, repo"),
         "{{repo}}")])
    b.panel("Slowest methods (p99)", "s", [
        (topk(quantile(0.99, "protonn_storage_operation_duration_seconds", SEL, "le, repo, op")),
         "{{repo}}.{{op}}")],
        description="The repository methods with the highest p99 latency: which call a slow "
                    "database hurts first.")
    b.panel("Rows expired/s", "ops", [
        (rate("protonn_storage_expired_deleted_total", SEL, "pod"), "{{pod}}")])
    b.panel("ScyllaDB driver: retries and failures/s", "ops", [
        (rate("protonn_storage_driver_retries_total", SEL, "pod"), "retries {{pod}}"),
        (rate("protonn_storage_driver_errors_total", SEL, "pod"), "failed {{pod}}"),
        (rate("protonn_storage_driver_request_timeouts_total", SEL, "pod"), "timed out {{pod}}")],
        description="The driver's own counts (0 without ScyllaDB): retries rising before "
                    "failures is a cluster under strain.")
    b.panel("ScyllaDB driver latency", "s", [
        (f"max by (pod) (protonn_storage_driver_latency_p99_seconds{{{SEL}}})", "p99 {{pod}}"),
        (f"max by (pod) (protonn_storage_driver_latency_p50_seconds{{{SEL}}})", "p50 {{pod}}")])
    return b


def rest():
    b = Board("protonn-rest", "Pro-tonn / Discord REST",
              "Requests to Discord's REST API: outcomes, 429s and the cluster-wide limiter.",
              variables("namespace", "node"))
    b.panel("Requests/s by route", "reqps", [
        (rate("protonn_rest_requests_total", SEL, "route"), "{{route}}")])
    b.panel("429s/s", "reqps", [
        (f"sum by (route) (rate(protonn_rest_requests_total"
         f'{{{SEL}, outcome="rate_limited"}}[$__rate_interval]))', "{{route}}")],
        description="Above 0.1/s for 5 minutes the ProtonnRest429s alert fires.",
        thresholds=[(None, "green"), (0.1, "red")])
    b.panel("Errors/s by outcome", "reqps", [
        (f"sum by (outcome) (rate(protonn_rest_requests_total"
         f'{{{SEL}, outcome!="ok"}}[$__rate_interval]))', "{{outcome}}")])
    b.panel("Success ratio", "percentunit", [
        (f'sum(rate(protonn_rest_requests_total{{{SEL}, outcome="ok"}}[$__rate_interval])) / '
         f"sum(rate(protonn_rest_requests_total{{{SEL}}}[$__rate_interval]))", "ok")],
        description="Empty while no request was sent.")
    b.row_start("Cluster-wide limiter", collapsed=True)
    b.panel("Global budget in use", "percentunit", [
        (f"max(protonn_rest_global_budget_used_ratio{{{NS}}})", "used")],
        thresholds=[(None, "green"), (0.9, "orange")])
    b.panel("429s/s by scope", "reqps", [
        (rate("protonn_rest_rate_limited_total", SEL, "scope"), "{{scope}}")])
    b.panel("Permit wait p99", "s", [
        (quantile(0.99, "protonn_rest_permit_wait_seconds"), "p99")])
    b.panel("Requests waiting", "short", [
        (f"sum by (pod) (protonn_rest_queued_requests{{{SEL}}})", "{{pod}}")],
        description="Waiting for a bucket or a place in the global line; over 10,000 on a "
                    "node, new requests are refused (outcome queue_full).")
    b.panel("Invalid requests in the last 10 minutes", "short", [
        (f"max(protonn_rest_invalid_requests{{{NS}}})", "invalid"),
        (f"max(protonn_rest_halted{{{NS}}}) * 10000", "halted (10,000 = stopped)")],
        description="Discord bans at 10,000. From 2,500 only interaction responses are sent, "
                    "from 5,000 nothing (the alerts fire at both); a 401 halts everything.",
        thresholds=[(None, "green"), (2500, "orange"), (5000, "red")])
    return b


def cluster():
    b = Board("protonn-cluster", "Pro-tonn / Cluster and coordinator",
              "Coordinator leadership, membership, shard assignment and handoffs "
              "(cluster issue #7).",
              variables("namespace", "node", "coordinator"))
    csel = NS + ', pod=~"$coordinator"'
    b.panel("Ready shards per node", "short", [
        (f'sum by (pod) (protonn_shard_state_shards{{{SEL}, state="ready"}})', "{{pod}}")],
        description="Even spread is the rebalancer's goal; a drained node goes to zero.")
    b.panel("Coordinators leading", "short", [
        (f"sum(protonn_coordinator_leader{{{NS}}})", "leaders")], kind="stat", width=6,
        thresholds=[(None, "red"), (1, "green"), (2, "red")],
        description="Exactly 1 is green: 0 fires ProtonnNoCoordinatorLeader, 2 ProtonnTwoLeaders; "
                    "no value at all, ProtonnCoordinatorAbsent.")
    b.panel("Leader", "short", [
        (f"max by (pod) (protonn_coordinator_leader{{{csel}}})", "{{pod}}")], width=6,
        description="1 on the leader, 0 on standbys.")
    b.panel("Fencing epoch", "short", [
        (f"max(protonn_coordinator_fencing_epoch{{{csel}}})", "epoch")], decimals=0)
    b.panel("Nodes by state", "short", [
        (f"max by (state) (protonn_coordinator_nodes{{{csel}}})", "{{state}}")])
    b.panel("Shards by assignment state", "short", [
        (f"max by (state) (protonn_coordinator_shards{{{csel}}})", "{{state}}")], stack=True)
    b.panel("Shard moves/s by trigger", "ops", [
        (rate("protonn_coordinator_rebalance_moves_total", csel, "trigger"), "{{trigger}}")])
    b.panel("Handoff duration (p50, p95)", "s", [
        (quantile(0.5, "protonn_cluster_handoff_duration_seconds", csel), "p50"),
        (quantile(0.95, "protonn_cluster_handoff_duration_seconds", csel), "p95")],
        description="p95 above 5 s for 10 minutes fires ProtonnHandoffSlow.",
        thresholds=[(None, "green"), (5, "red")])
    b.panel("Handoffs/s by outcome", "ops", [
        (rate("protonn_cluster_handoffs_total", csel, "outcome"), "{{outcome}}")])
    b.panel("Resharding: new shards ready and switched", "short", [
        (f"max(protonn_coordinator_reshard_target_shards{{{csel}}})", "target"),
        (f"max(protonn_coordinator_reshard_ready_shards{{{csel}}})", "ready"),
        (f"max(protonn_coordinator_reshard_switched_shards{{{csel}}})", "switched")],
        description="While `protonn reshard` runs: the new shard count, and how many of its "
                    "shards are up with their guilds in, and handle them. All 0 when none runs.")
    b.panel("gRPC calls/s by code", "reqps", [
        (rate("protonn_cluster_grpc_requests_total", NS, "code"), "{{code}}")])
    return b


BOARDS = {"overview": overview, "shards": shards, "actors": actors, "storage": storage,
          "rest": rest, "cluster": cluster}


def main():
    check = sys.argv[1:] == ["--check"]
    stale = []
    for name, build in BOARDS.items():
        path = ROOT / "dashboards" / f"{name}.json"
        text = json.dumps(build().json(), indent=2) + "\n"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
    if stale:
        sys.exit(f"dashboards differ from scripts/dashboards.py (run it): {', '.join(stale)}")


if __name__ == "__main__":
    main()
