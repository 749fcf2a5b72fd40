"""`make bench`: every benchmark in bench/, one after another, each on a database of its own
(a copy of the migrated template) and Redis database BENCH_REDIS_DB (emptied before each).
Prints each script's output as it runs, then writes the run as one JSON file and a markdown
table under bench/results/ (`<UTC time>-<scale>.json` and `.md`; `latest-<scale>.md` is the
newest), and exits non-zero if a script failed. Goals missed are reported, not failures: they
are targets to work toward, measured as ratios in the same run.

    BENCH_SCALE=quick|full (default full)   DATABASE_URL=postgres://user:pass@host:port/any
    BENCH_ONLY=gateway,history              (a subset, in the usual order)

DATABASE_URL names the server (and a role that may create databases); no data of that
database is touched. Not part of `make test`.
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common

# Cheap first: a broken set-up shows in seconds, not after the million-row seeds.
ORDER = ["shared_state", "authenticate", "charge", "payments", "gateway", "history", "usage"]
RESULTS = common.ROOT / "bench" / "results"
REDIS_DB = os.environ.get("BENCH_REDIS_DB", "9")


def machine() -> dict:
    def first_line(command):
        try:
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            return out.strip().splitlines()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            return "unknown"

    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory": memory,
        "python": platform.python_version(),
        "postgresql": first_line(["psql", "--version"]),
        "redis": " ".join(first_line(["redis-server", "--version"]).split()[:3]),
        "commit": first_line(["git", "-C", str(common.ROOT), "rev-parse", "--short", "HEAD"]),
    }


def markdown(run: dict) -> str:
    lines = [
        f"# Benchmarks, {run['started']} ({run['scale']})",
        "",
        f"Machine: {run['machine']['cpus']} CPUs ({run['machine']['cpu']}), "
        f"{run['machine']['memory']}, Python {run['machine']['python']}, "
        f"{run['machine']['postgresql']}, {run['machine']['redis']}; commit "
        f"{run['machine']['commit']}. Whole run {run['seconds'] / 60:.1f} min.",
        "",
        "| benchmark | seconds | headline |",
        "|---|---|---|",
    ]
    for name, item in run["benchmarks"].items():
        headline = item.get("headline") or f"**failed** (exit {item['exit']})"
        lines.append(f"| {name} | {item['seconds']:.0f} | {headline} |")
    lines += ["", "| goal | measured | target | met |", "|---|---|---|---|"]
    for name, item in run["benchmarks"].items():
        for goal in item.get("goals", []):
            sign = "≤" if goal["at_most"] else "≥"
            lines.append(
                f"| {name}: {goal['goal']} | {goal['value']:.2f} | {sign} {goal['target']} | "
                f"{'yes' if goal['met'] else '**no**'} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    common.require()
    common.tool("pgbench", "postgresql-contrib")
    common.tool("wrk", "wrk")
    only = [name for name in os.environ.get("BENCH_ONLY", "").split(",") if name]
    unknown = set(only) - set(ORDER)
    if unknown:
        sys.exit(f"BENCH_ONLY: no benchmark named {', '.join(sorted(unknown))}")
    names = [name for name in ORDER if not only or name in only]
    started = datetime.now(UTC)
    began = time.perf_counter()
    template = common.migrated_template()
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    run = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "scale": common.SCALE,
        "machine": machine(),
        "benchmarks": {},
    }
    folder = Path(tempfile.mkdtemp(prefix="bench-run-"))
    for name in names:
        print(f"\n==> bench/{name}.py ({common.SCALE})", flush=True)
        subprocess.run(["redis-cli", "-n", REDIS_DB, "flushdb"], check=True, capture_output=True)
        result = folder / f"{name}.json"
        with common.scratch_copy(template, name) as url:
            clock = time.perf_counter()
            exit_code = subprocess.run(
                [sys.executable, str(common.ROOT / "bench" / f"{name}.py")],
                cwd=common.ROOT,
                env={
                    **os.environ,
                    "DATABASE_URL": url,
                    "REDIS_URL": redis_url,
                    "BENCH_RESULT": str(result),
                },
            ).returncode
            seconds = time.perf_counter() - clock
        item = {"exit": exit_code, "seconds": seconds}
        if exit_code == 0 and result.exists():
            item.update(json.loads(result.read_text()))
        run["benchmarks"][name] = item
    run["seconds"] = time.perf_counter() - began
    RESULTS.mkdir(exist_ok=True)
    stem = f"{started.strftime('%Y%m%dT%H%MZ')}-{common.SCALE}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(run, ensure_ascii=False, indent=1) + "\n")
    table = markdown(run)
    (RESULTS / f"{stem}.md").write_text(table)
    (RESULTS / f"latest-{common.SCALE}.md").write_text(table)
    print("\n" + table)
    print(f"written: bench/results/{stem}.json and .md ({run['seconds'] / 60:.1f} min)")
    failed = [name for name, item in run["benchmarks"].items() if item["exit"] != 0]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
