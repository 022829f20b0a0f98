"""The bench's output: the console table, docs/benchmarks.md and docs/benchmarks.png."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infra.bench.badinput import BadInputResult
from infra.bench.failover import FailoverResult
from infra.bench.load import SETUPS, LoadSettings, SetupResult, ratio
from infra.bench.provision import ProvisionResult
from infra.bench.slowclients import AFTER_GETS, SlowClientResult

RATIOS = (("b", "a"), ("b", "e"), ("c", "a"), ("c", "d"))


@dataclass
class Section:
    name: str
    status: str = "ok"  # ok | skipped | failed
    note: str = ""
    seconds: float = 0.0


@dataclass
class BenchRun:
    date: str
    command: str
    machine: dict[str, str]
    load_before: str
    load_settings: LoadSettings
    generator: str
    load_after: str = ""
    total_s: float = 0.0
    setups: dict[str, SetupResult] = field(default_factory=dict)
    failover: FailoverResult | None = None
    bad_input: BadInputResult | None = None
    slow_clients: dict[str, SlowClientResult] = field(default_factory=dict)
    provisioning: ProvisionResult | None = None
    sections: list[Section] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(s.status == "ok" for s in self.sections)


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def throughput_table(setups: dict[str, SetupResult]) -> list[str]:
    lines = ["| setup | requests/s | range over rounds | p50 (ms) | p99 (ms) | errors "
             "| CPU idle before |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for key in SETUPS:
        setup = setups.get(key)
        label = f"({key}) {SETUPS[key][1]}"
        if setup is None or setup.result is None:
            why = setup.skipped if setup is not None and setup.skipped else "not run"
            lines.append(f"| {label} | skipped: {why} | | | | | |")
            continue
        r, (low, high) = setup.result, setup.spread
        idle = [i for i in setup.idle_before if i >= 0]
        idle_text = f"{min(idle):.0f}-{max(idle):.0f}%" if idle else "-"
        errors = sum(x.errors for x in setup.rounds)
        lines.append(f"| {label} | {r.requests_per_sec:,.0f} | {low:,.0f}-{high:,.0f} | "
                     f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {errors} | {idle_text} |")
    return lines


def busy_note(setups: dict[str, SetupResult]) -> list[str]:
    """Say so when other work left the CPU mostly busy: such figures are low and noisy."""
    idle = sorted(i for s in setups.values() for i in s.idle_before if i >= 0)
    if not idle:
        return []
    median = idle[len(idle) // 2]
    if median >= 50:
        return [f"The machine was quiet: CPU idle before the rounds was {median:.0f}% (median)."]
    return [f"**The machine was busy with other work during this run**: CPU idle before the "
            f"rounds was {median:.0f}% (median), so these figures are lower and noisier than "
            "on a quiet machine; the ratios, taken from setups that took turns, hold up better "
            "than the absolute numbers."]


def commands_lines(setups: dict[str, SetupResult]) -> list[str]:
    return [f"- ({k}) `{setups[k].command}`" for k in SETUPS
            if setups.get(k) is not None and setups[k].command]


def ratio_lines(setups: dict[str, SetupResult]) -> list[str]:
    lines = []
    for num, den in RATIOS:
        value = ratio(setups, num, den)
        lines.append(f"- {num}/{den} (requests/s): " + ("not measured" if value is None
                                                       else f"**{value:.2f}x**"))
    return lines


def _window_verdict(seconds: float, window: float | None) -> str:
    if window is None:
        return ""
    verdict = "within" if seconds <= window else "OUTSIDE"
    return f" ({verdict} the health check window: interval x unhealthy threshold = {window:g} s)"


def failover_lines(result: FailoverResult | None) -> list[str]:
    if result is None:
        return ["Not measured in this run."]
    window = result.health_window_s
    rejoin = "did not rejoin" if result.rejoin_s is None else f"{result.rejoin_s:.2f} s"
    kinds = result.failures_by_kind
    lines = [
        "| measure | value |", "|---|---:|",
        f"| steady load (requests/s through the LB) | {result.request_rate:,.0f} |",
        f"| requests sent during the drill | {result.requests:,} |",
        f"| failed requests after killing `{result.victim}` | {result.failed_after_kill} |",
        f"| time from the kill until the last failing request was sent | "
        f"{result.failing_for_s:.2f} s |",
        f"| time from the restart until it serves again | {rejoin} |",
        f"| failed requests after the restart | {result.failed_after_restart} |",
        "",
    ]
    if "502" in kinds:
        count, last = kinds["502"]
        lines.append(f"Requests sent to the dead instance (502) stopped {last:.2f} s after the "
                     f"kill{_window_verdict(last, window)}; the last failure of any kind was "
                     f"sent {result.failing_for_s:.2f} s after it"
                     f"{_window_verdict(result.failing_for_s, window)}.")
    else:
        lines.append(f"Failures stopped {result.failing_for_s:.2f} s after the kill"
                     f"{_window_verdict(result.failing_for_s, window)}.")
    lines.append(f"Answers by status: {_statuses(result.statuses)}.")
    if kinds:
        lines += ["", "Failures after the kill, by kind:", "",
                  "| kind | requests | last one sent after the kill |", "|---|---:|---:|"]
        lines += [f"| {kind} | {n} | {last:.2f} s |" for kind, (n, last) in sorted(kinds.items())]
        note = ("A 502 is a request the load balancer sent to the dead instance, until its "
                "health checks took it out.")
        if "503" in kinds:
            note += (" A 503 is Caddy's own \"no upstreams available\": while one upstream is "
                     "down and requests arrive concurrently, its round-robin selection now and "
                     "then skips past the healthy one (with a single client thread none were "
                     "seen). An ALB does not answer that way.")
        lines += ["", note]
    return lines


def _statuses(statuses: dict) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0])))


def slow_client_lines(results: dict[str, SlowClientResult]) -> list[str]:
    if not results:
        return ["Not measured in this run."]
    lines = ["| server | GETs served (2 s timeout) | share | p50 (ms) | p99 (ms) | failures "
             f"| served afterwards (of {AFTER_GETS}) |", "|---|---:|---:|---:|---:|---|---:|"]
    for key, r in results.items():
        failures = ", ".join(f"{what}: {n}" for what, n in sorted(r.failures.items())) or "-"
        lines.append(f"| ({key}) {SETUPS[key][0]} | {r.served} of {r.attempts} | "
                     f"**{100 * r.share:.0f}%** | {_num(r.percentile(50))} | "
                     f"{_num(r.percentile(99))} | {failures} | {r.served_after} |")
    return lines


def bad_input_lines(result: BadInputResult | None) -> list[str]:
    if result is None:
        return ["Not measured in this run."]
    lines = [
        "| measure | value |", "|---|---:|",
        f"| distinct requests tried | {result.tried} |",
        f"| of which from the fixed corpus / generated by hypothesis | "
        f"{result.from_corpus} / {result.generated} |",
        f"| rejected with a 4xx | {result.rejected} |",
        f"| accepted as a valid seed (integral strings, forms) | {result.accepted} |",
        f"| **5xx answers** | **{result.server_errors}** |",
        f"| no answer (connection closed) | {result.no_response} |",
        f"| **refused requests that changed the seed** | **{result.changed_on_reject}** |",
        "",
        f"Answers by status: {_statuses(result.statuses)}.",
    ]
    for title, examples in (("5xx", result.examples_5xx),
                            ("changed the seed", result.examples_changed)):
        if examples:
            lines += ["", f"Requests that got {title}:" if title == "5xx"
                      else f"Refused requests that {title}:", ""]
            lines += [f"- `{e[:200]}`" for e in examples[:10]]
    return lines


def provisioning_lines(result: ProvisionResult | None) -> list[str]:
    if result is None:
        return ["Not measured in this run."]
    deploy_n, destroy_n = sum(result.deploy_calls.values()), sum(result.destroy_calls.values())
    lines = [
        "| | wall time | AWS API calls |", "|---|---:|---:|",
        f"| deploy ({result.instances} instances) | {result.deploy_s:.2f} s | {deploy_n} |",
        f"| destroy | {result.destroy_s:.2f} s | {destroy_n} |",
        "", "API calls by operation:", "",
        "| operation | deploy | destroy |", "|---|---:|---:|",
    ]
    for op in sorted(set(result.deploy_calls) | set(result.destroy_calls)):
        lines.append(f"| {op} | {result.deploy_calls.get(op, 0)} | "
                     f"{result.destroy_calls.get(op, 0)} |")
    return lines


def render_markdown(run: BenchRun, plot_name: str = "benchmarks.png") -> str:
    out = [*_header_section(run), *_throughput_section(run, plot_name),
           *_failover_section(run), *_slow_clients_section(run), *_bad_input_section(run),
           *_provisioning_section(run), *_steps_section(run)]
    return "\n".join(out)


def _header_section(run: BenchRun) -> list[str]:
    return [
        "# Benchmarks",
        "",
        f"Measured by `{run.command}` on {run.date}, all in one run of {run.total_s:.0f} s, "
        "on one machine, every server on 127.0.0.1. Generated; do not edit by hand.",
        "",
        "## Machine",
        "",
        "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in run.machine.items()),
        f"| Load average (1, 5, 15 min) at the start | {run.load_before} |",
        f"| Load average (1, 5, 15 min) at the end | {run.load_after} |",
        "",
    ]


def _throughput_section(run: BenchRun, plot_name: str) -> list[str]:
    s = run.load_settings
    return [
        "## Throughput and latency",
        "",
        f"Load generator: **{run.generator}**, `GET /` for {s.duration_s} s with "
        f"{s.connections} connections on {s.threads} threads (`wrk -t{s.threads} "
        f"-c{s.connections} -d{s.duration_s}s --latency URL`), after a {s.warmup_s} s warm-up. "
        f"The setups take turns, one loaded at a time, for {s.rounds} rounds (a b c d e a b c d e "
        "...); each row is the median round by requests/s, with that round's latencies. "
        "wrk shares the cores with the servers it measures. *CPU idle before* is the idle "
        "share of all cores in the half second before each round: what other work on the "
        "machine left.",
        "",
        *throughput_table(run.setups),
        "",
        *busy_note(run.setups),
        "",
        "Servers:",
        "",
        *commands_lines(run.setups),
        "",
        *ratio_lines(run.setups),
        "",
        f"![Throughput and latency per setup]({plot_name})",
        "",
    ]


def _failover_section(run: BenchRun) -> list[str]:
    return [
        "## Failover",
        "",
        "Through the local load balancer (Caddy, active health checks mirroring the target "
        "group), under a steady load of `GET /` from two threads; one instance is killed, "
        "then started again.",
        "",
        *failover_lines(run.failover),
        "",
    ]


def _slow_clients_section(run: BenchRun) -> list[str]:
    window = (f"{next(iter(run.slow_clients.values())).window_s:g} s" if run.slow_clients
              else "the window")
    return [
        "## Slow clients",
        "",
        "While 200 slow connections are held open against one server (a third each idle, "
        "dripping header lines every 0.5 s, or sending half a body), one other client sends "
        f"`GET /` on a new connection each time, with a 2 s timeout, for {window}. Then the "
        f"slow connections close and {AFTER_GETS} more GETs check that the server serves as "
        "before.",
        "",
        *slow_client_lines(run.slow_clients),
        "",
    ]


def _bad_input_section(run: BenchRun) -> list[str]:
    return [
        "## Bad input",
        "",
        "Against one `python -m app`: a fixed corpus (booleans, floats, null, lists, objects, "
        "huge integers, bad UTF-8, empty and malformed JSON, oversized bodies, bad methods, "
        "malformed HTTP) plus bodies generated by hypothesis. The seed is read before and "
        "after every request.",
        "",
        *bad_input_lines(run.bad_input),
        "",
    ]


def _provisioning_section(run: BenchRun) -> list[str]:
    return [
        "## Provisioning (moto server)",
        "",
        "`Stack.deploy()` and `Stack.destroy()` against a moto server on 127.0.0.1 with fake "
        "credentials; API calls counted with a botocore `before-call.*.*` hook (waiter polls "
        "included). On AWS each call is a round trip, and the waits dominate.",
        "",
        *provisioning_lines(run.provisioning),
        "",
    ]


def _steps_section(run: BenchRun) -> list[str]:
    return [
        "## Steps of this run",
        "",
        "| step | status | time | note |", "|---|---|---:|---|",
        *(f"| {x.name} | {x.status} | {x.seconds:.1f} s | {x.note} |" for x in run.sections),
        "",
        "## Reproduce",
        "",
        "```sh",
        run.command,
        "```",
        "",
    ]


def plot(setups: dict[str, SetupResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    keys = [k for k in SETUPS if setups.get(k) and setups[k].result is not None]
    labels = [f"({k}) {SETUPS[k][0]}" for k in keys]
    rps = [setups[k].result.requests_per_sec for k in keys]
    p50 = [setups[k].result.p50_ms for k in keys]
    p99 = [setups[k].result.p99_ms for k in keys]

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = {"a": "#9e9e9e", "b": "#1f77b4", "c": "#2ca02c", "d": "#ff7f0e", "e": "#8c564b"}
    bars = left.bar(labels, rps, color=[colors.get(k, "#7f7f7f") for k in keys])
    left.bar_label(bars, labels=[f"{v:,.0f}" for v in rps], fontsize=8)
    left.set_ylabel("requests/s (higher is better)")
    left.set_yscale("log")
    left.set_title("Throughput, GET /")

    xs = range(len(keys))
    width = 0.38
    b50 = right.bar([x - width / 2 for x in xs], p50, width, label="p50")
    b99 = right.bar([x + width / 2 for x in xs], p99, width, label="p99")
    right.bar_label(b50, labels=[f"{v:.1f}" for v in p50], fontsize=8)
    right.bar_label(b99, labels=[f"{v:.1f}" for v in p99], fontsize=8)
    right.set_xticks(list(xs), labels)
    right.set_ylabel("latency, ms (lower is better)")
    right.set_yscale("log")
    right.set_title("Latency under load")
    right.legend()
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=8, rotation=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def console_summary(run: BenchRun) -> str:
    lines = ["", *throughput_table(run.setups), "", *ratio_lines(run.setups)]
    for key, r in run.slow_clients.items():
        lines.append(f"- slow clients, ({key}) {SETUPS[key][0]}: {r.served}/{r.attempts} GETs "
                     f"served ({100 * r.share:.0f}%), p99 {_num(r.percentile(99))} ms")
    measured = ((run.failover, _failover_summary), (run.bad_input, _bad_input_summary),
                (run.provisioning, _provisioning_summary))
    lines += [summarize(result) for result, summarize in measured if result]
    lines += [f"- {x.name}: {x.status.upper()} - {x.note}" for x in run.sections
              if x.status != "ok"]
    return "\n".join(lines)


def _failover_summary(f: FailoverResult) -> str:
    return (f"- failover: {f.failed_after_kill} failed requests over {f.failing_for_s:.2f}s "
            f"(health window {_num(f.health_window_s, '{:g}')}s), rejoin {_num(f.rejoin_s)}s")


def _bad_input_summary(b: BadInputResult) -> str:
    return (f"- bad input: {b.tried} distinct requests, {b.server_errors} x 5xx, "
            f"{b.changed_on_reject} refused requests changed the seed")


def _provisioning_summary(p: ProvisionResult) -> str:
    return (f"- provisioning: deploy {p.deploy_s:.2f}s / {sum(p.deploy_calls.values())} "
            f"calls, destroy {p.destroy_s:.2f}s / {sum(p.destroy_calls.values())} calls")
