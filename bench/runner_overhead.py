"""Runner overhead: the same task three ways, and runs per minute.

    python bench/runner_overhead.py [--runs 10] [--json]

1. plain   — Playwright in this process, browser already launched; per run: new context + page,
             the task, close the context. The floor: no sandbox, no tracing.
2. warm    — execute() with a BrowserPool whose warm child is ready (the steady state of a worker
             between jobs): sandboxed child, steps, fingerprints, result.
3. cold    — execute() without a pool: Chromium and the child are started for the run.
Then back-to-back warm runs of a 10-step task give runs/minute for one worker.
The task is 20 steps (goto, 9 fills, 5 clicks, 5 reads) on a page served by this script.
Goals (issue 3): warm ≤ 1.3× plain; ≥ 60 runs/min per worker for the 10-step task.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks_app.runner import BrowserPool, RunSpec, execute
from tasks_app.runner.browser import CHROMIUM_ARGS, chromium_path
from tasks_app.tests.sites import serve

FIELDS = [f"f{i}" for i in range(9)]
PAGE = (
    "<html><head><title>Bench</title></head><body><form onsubmit='return false'>"
    + "".join(f'<label for="{f}">{f}</label><input id="{f}" name="{f}"><br>' for f in FIELDS)
    + "".join(f'<button type="button" id="b{i}" onclick="out{i}.textContent=\'clicked {i}\'">B{i}</button>'
              f'<span id="out{i}"></span>' for i in range(5))
    + "</form></body></html>"
)

TASK_20 = textwrap.dedent("""
    def run(page, params):
        page.goto(params["base"] + "/")
        for f in params["fields"]:
            page.fill("#" + f, "value " + f)
        texts = []
        for i in range(5):
            page.click(f"#b{i}")
            texts.append(page.inner_text(f"#out{i}"))
        return texts
""")

TASK_10 = textwrap.dedent("""
    def run(page, params):
        page.goto(params["base"] + "/")
        for f in params["fields"][:5]:
            page.fill("#" + f, "value " + f)
        for i in range(2):
            page.click(f"#b{i}")
            page.inner_text(f"#out{i}")
        return "ok"
""")


def bench_plain_and_warm(base: str, runs: int) -> tuple[dict, dict]:
    """Plain and warm runs alternate, so that load from elsewhere hits both alike."""
    from playwright.sync_api import sync_playwright

    ns: dict = {}
    exec(compile(TASK_20, "task20", "exec"), ns)  # noqa: S102
    plain_ms, warm_ms, parts = [], [], []
    with sync_playwright() as pw, BrowserPool() as pool:
        t = time.perf_counter()
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        launch_ms = (time.perf_counter() - t) * 1000
        for i in range(runs + 1):
            t = time.perf_counter()
            ctx = browser.new_context(accept_downloads=False, viewport={"width": 1280, "height": 720})
            page = ctx.new_page()
            out = ns["run"](page, {"base": base, "fields": FIELDS})
            ctx.close()
            ms = (time.perf_counter() - t) * 1000
            assert out == [f"clicked {i}" for i in range(5)], out
            if i:  # the first round warms caches
                plain_ms.append(ms)
            pool.wait_warm()
            t = time.perf_counter()
            result = execute(spec(base), browser=pool)
            ms = (time.perf_counter() - t) * 1000
            assert result.status == "succeeded", (result.error_message, result.logs[-2000:])
            if i:
                warm_ms.append(ms)
                parts.append(result.timings)
        browser.close()
    keys = ("connect_ms", "task_ms", "fingerprint_ms", "teardown_ms", "cleanup_ms")
    plain = {"median_ms": statistics.median(plain_ms), "mean_ms": statistics.mean(plain_ms), "launch_ms": launch_ms}
    warm = {"median_ms": statistics.median(warm_ms), "mean_ms": statistics.mean(warm_ms),
            "parts_median_ms": {k: statistics.median(p.get(k, 0) for p in parts) for k in keys}}
    return plain, warm


def spec(base: str, code: str = TASK_20) -> RunSpec:
    return RunSpec(code=code, params={"base": base, "fields": FIELDS}, secrets={})


def bench_cold(base: str, runs: int) -> dict:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = execute(spec(base))
        times.append((time.perf_counter() - t) * 1000)
        assert result.status == "succeeded", result.error_message
    return {"median_ms": statistics.median(times), "mean_ms": statistics.mean(times)}


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench_throughput(base: str, seconds: float) -> dict:
    """Back-to-back runs; also the CPU they cost (this process and every descendant it reaped:
    harness, driver, Chromium), which gives the capacity of an otherwise idle machine."""
    done = 0
    cpu0 = _cpu_s()
    with BrowserPool() as pool:
        pool.wait_warm()
        execute(spec(base, TASK_10), browser=pool)
        pool.wait_warm()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            result = execute(spec(base, TASK_10), browser=pool)
            assert result.status == "succeeded", result.error_message
            done += 1
        elapsed = time.perf_counter() - t0
    cpu_per_run = (_cpu_s() - cpu0) / (done + 1)  # pool start/stop and the warm-up run included
    return {"runs": done, "seconds": round(elapsed, 1), "runs_per_min": round(done * 60 / elapsed, 1),
            "cpu_s_per_run": round(cpu_per_run, 3),
            "idle_machine_capacity_runs_per_min": round(60 * (os.cpu_count() or 1) / cpu_per_run, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with serve({"/": PAGE}) as site:
        plain, warm = bench_plain_and_warm(site.url, args.runs)
        cold = bench_cold(site.url, args.cold_runs)
        tput = bench_throughput(site.url, args.seconds)
    report = {
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "plain_20_steps": plain,
        "runner_warm_20_steps": warm,
        "runner_cold_20_steps": cold,
        "ratio_warm_vs_plain": round(warm["median_ms"] / plain["median_ms"], 2),
        "ratio_cold_vs_plain": round(cold["median_ms"] / plain["median_ms"], 2),
        "throughput_10_steps": tput,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"machine: {report['cpus']} cpus, load average {report['load_avg_1m']}")
    print(f"plain Playwright, 20 steps : {plain['median_ms']:8.0f} ms/run (median; Chromium launch "
          f"{plain['launch_ms']:.0f} ms, not counted)")
    print(f"runner, warm browser       : {warm['median_ms']:8.0f} ms/run   ratio {report['ratio_warm_vs_plain']}x "
          f"(goal <= 1.3x)")
    print(f"    parts (median ms)      : {warm['parts_median_ms']}")
    print(f"runner, cold               : {cold['median_ms']:8.0f} ms/run   ratio {report['ratio_cold_vs_plain']}x")
    print(f"10-step task, back to back : {tput['runs_per_min']:8.1f} runs/min ({tput['runs']} runs in "
          f"{tput['seconds']} s; goal >= 60)")
    print(f"    CPU per run            : {tput['cpu_s_per_run']} s (all processes) -> an idle "
          f"{report['cpus']}-cpu worker could do ~{tput['idle_machine_capacity_runs_per_min']} runs/min")


if __name__ == "__main__":
    main()
