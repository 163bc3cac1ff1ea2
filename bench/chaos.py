"""`make chaos`: the long form of tests/integration/test_chaos.py. 10,000 jobs (`--jobs N`)
through the real API and handlers on moto, in process, with faults injected into a fraction of
the AWS calls, duplicate deliveries and abandoned invocations, then the schedules until nothing
changes. Bounded in time (`--max-minutes`, default 25): submission stops at 72 % of the budget
and the run reports how many jobs it submitted.

Writes the key "chaos" of bench/results.json (other keys are kept) and prints the figures.
Exits 1 when a loss figure is not 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import platform
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
EXAMPLES = 20  # ids and details kept per figure in results.json
LISTED_UP_TO = 2000  # jobs the final check reads through the API's listing; more: a table scan


class _Discard(io.TextIOBase):
    """Where the functions' own stdout goes (their logs and metrics): nowhere."""

    def write(self, text: str) -> int:
        return len(text)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def merge_results(chaos: dict[str, Any], path: Path = RESULTS) -> None:
    """Put `chaos` under its key, keeping everything else the file holds."""
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results["chaos"] = chaos
    path.write_text(json.dumps(results, indent=2) + "\n")


def summary(figures: dict[str, Any], losses: dict[str, int]) -> dict[str, Any]:
    """What results.json keeps: every count, and the first few cases of each loss."""
    by_kind: Counter[str] = Counter()
    by_path: Counter[str] = Counter()
    by_call: Counter[str] = Counter()
    for name, count in figures["faults_by_path_call_kind"].items():
        path, call, kind = name.split(" ", 2)
        by_kind[kind] += count
        by_path[path] += count
        by_call[call] += count
    kept = (
        "lost",
        "succeeded_recorded_failed",
        "infra_failed",
        "twice",
        "stuck",
        "5xx_left_unfindable_job",
        "duplicate_jobs",
        "not_accepted",
        "attempts_beyond_handler_runs",
        "permanent_not_failed_as_planned",
        "resend_named_another_job",
    )
    config = figures["config"]
    return {
        "jobs_requested": figures["requested"],
        "jobs_submitted": figures["submitted"],
        "time_bound_hit": figures["time_bound_hit"],
        "accepted": figures["accepted"],
        "losses": losses,
        **{f"{name}_examples": figures[name][:EXAMPLES] for name in kept if figures[name]},
        "not_accepted": len(figures["not_accepted"]),
        "attempts_beyond_handler_runs": len(figures["attempts_beyond_handler_runs"]),
        "5xx_by_code": figures["5xx_by_code"],
        "5xx_on_post": figures["5xx_on_post"],
        "final_statuses": figures["final_statuses"],
        "failed_by_code": figures["failed_by_code"],
        "jobs_in_table": figures["jobs_in_table"],
        "checked_by": figures["checked_by"],
        "messages_left": figures["messages_left"],
        "messages_after_submitting": figures["messages_after_submitting"],
        "faults_injected": figures["faults_injected"],
        "faults_by_kind": dict(sorted(by_kind.items())),
        "faults_by_path": dict(sorted(by_path.items())),
        "faults_by_call": dict(sorted(by_call.items())),
        "duplicate_messages_sent": figures["duplicate_messages_sent"],
        "abandoned_invocations": figures["abandoned_invocations"],
        "runtime_delete_errors": figures["runtime_delete_errors"],
        "maintenance_errors": figures["maintenance_errors"],
        "handler_runs": figures["handler_runs"],
        "side_effects": figures["side_effects"],
        "settle_rounds": figures["settle_rounds"],
        "quiet": figures["quiet"],
        "seconds_by_phase": figures["seconds_by_phase"],
        "duration_seconds": figures["duration_seconds"],
        "rates": {k: v for k, v in config.items() if k.endswith(("_rate", "_share"))},
        "seed": config["seed"],
        "date": datetime.now(UTC).date().isoformat(),
        "machine": machine(),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs to submit (default 10000)")
    parser.add_argument("--max-minutes", type=float, default=25, help="time budget (default 25)")
    parser.add_argument("--seed", type=int, default=None, help="another seed than the short form's")
    args = parser.parse_args(argv)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "chaos",
            "AWS_SECRET_ACCESS_KEY": "chaos",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": "tarefa",
            "POWERTOOLS_METRICS_NAMESPACE": "Tarefa",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    sys.path.insert(0, str(ROOT))  # the workload is imported by name: tests.integration.chaos_workload
    import warnings

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    from tests.integration.chaos import ChaosConfig, run_chaos

    config = ChaosConfig(
        jobs=args.jobs,
        max_seconds=args.max_minutes * 60,
        wave=100,
        maintenance_every=5,
        check_by_listing=args.jobs <= LISTED_UP_TO,
    )
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    print(f"Chaos run: {config.jobs} jobs, at most {args.max_minutes:g} minutes, seed {config.seed}...")
    with contextlib.redirect_stdout(_Discard()):
        result = run_chaos(config)
    losses = result.losses()
    chaos = summary(result.figures, losses)
    merge_results(chaos)
    f = result.figures
    print(
        f"{f['submitted']} submitted ({'time bound hit' if f['time_bound_hit'] else 'all'}), "
        f"{f['accepted']} accepted, {f['faults_injected']} faults, "
        f"{f['duplicate_messages_sent']} duplicate messages, {f['abandoned_invocations']} abandoned "
        f"invocations, {f['duration_seconds']} s"
    )
    print(f"final statuses: {f['final_statuses']}")
    print(f"5xx: {f['5xx_by_code']}")
    for name, count in losses.items():
        print(f"  {name:28} {count}")
    print(f"Written to {RESULTS.relative_to(ROOT)} (key: chaos)")
    return 1 if any(losses.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
