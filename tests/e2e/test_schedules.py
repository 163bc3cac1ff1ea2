"""End to end: a user schedule created over HTTP on `tarefa local` (started with
--schedule-speedup 60, so a rate(1 minute) fires about every second) makes jobs, one per firing;
the CLI lists, disables and deletes it; a bulk dry run counts over HTTP and the CLI."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from tarefa.local.process import TAREFA

from .conftest import RunningStack


def cli(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TAREFA), "--state-dir", str(stack.state_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def scheduled_jobs(stack: RunningStack, token: str) -> list[dict[str, Any]]:
    status, page = stack.request("GET", "/jobs?type=system.echo&limit=100", token=token)
    assert status == 200, page
    return [j for j in page["items"] if j["jobId"].startswith("sched-")]


def test_a_schedule_created_on_the_local_stack_makes_jobs(stack: RunningStack) -> None:
    token = stack.token("sched-e2e")
    body = {
        "name": "every-minute",
        "type": "system.echo",
        "payload": {"hello": "schedule"},
        "rate": "rate(1 minute)",
    }
    status, created = stack.request("POST", "/schedules", body, token)
    assert status == 201, created
    assert created["rate"] == "rate(1 minute)" and created["nextRunAt"]

    stack.wait_until(lambda: len(scheduled_jobs(stack, token)) >= 2, "two firings made jobs", timeout=60)
    jobs = scheduled_jobs(stack, token)
    assert len({j["jobId"] for j in jobs}) == len(jobs)  # one job per firing
    first = jobs[-1]
    done = stack.wait_for_status(first["jobId"], token, "COMPLETED")
    assert done[-1] == "COMPLETED"
    status, job = stack.request("GET", f"/jobs/{first['jobId']}", token=token)
    assert job["result"] == {"hello": "schedule"} and job["userId"] == "sched-e2e"
    assert stack.request("GET", f"/jobs/{first['jobId']}", token=stack.token("someone-else"))[0] == 404

    listed = cli(stack, "schedules", "list", "--token", token, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)["items"]] == ["every-minute"]
    table = cli(stack, "schedules", "list", "--token", token)
    assert "every-minute" in table.stdout and "rate(1 minute)" in table.stdout

    disabled = cli(stack, "schedules", "disable", "every-minute", "--token", token, "--json")
    assert disabled.returncode == 0, disabled.stderr
    assert json.loads(disabled.stdout)["enabled"] is False
    time.sleep(2)  # a firing sent just before the change may still be on its way
    before = len(scheduled_jobs(stack, token))
    time.sleep(3)  # three intervals at this speed-up
    assert len(scheduled_jobs(stack, token)) == before  # disabled: no more firings

    assert cli(stack, "schedules", "delete", "every-minute", "--token", token).returncode == 0
    assert cli(stack, "schedules", "get", "every-minute", "--token", token).returncode == 3  # not found
    refused = cli(
        stack, "schedules", "create", "bad", "system.echo", "--cron", "cron(0 3 * * * *)", "--token", token
    )
    assert refused.returncode == 7 and "day-of-month" in refused.stderr


def test_a_bulk_dry_run_counts_and_changes_nothing(stack: RunningStack) -> None:
    token = stack.token("bulk-e2e")
    status, job = stack.request(
        "POST", "/jobs", {"type": "system.fail", "payload": {"failTimes": 5, "permanent": True}}, token
    )
    assert status == 202, job
    stack.wait_for_status(job["jobId"], token, "FAILED")
    status, counted = stack.request(
        "POST", "/jobs/bulk/retry", {"type": "system.fail", "dryRun": True}, token
    )
    assert (status, counted["matched"]) == (200, 1)
    dry = cli(stack, "bulk", "retry", "--type", "system.fail", "--dry-run", "--token", token)
    assert dry.returncode == 0 and "1 jobs would be retried" in dry.stdout
    assert stack.request("GET", f"/jobs/{job['jobId']}", token=token)[1]["status"] == "FAILED"
    started = cli(stack, "bulk", "cancel", "--status", "FAILED", "--token", token, "--json")
    assert started.returncode == 0, started.stderr
    operation_id = json.loads(started.stdout)["operationId"]
    stack.wait_for_status(job["jobId"], token, "CANCELLED")

    def finished() -> bool:
        return bool(
            stack.request("GET", f"/jobs/bulk/{operation_id}", token=token)[1]["status"] == "COMPLETED"
        )

    stack.wait_until(finished, "the bulk operation finished")
    report = cli(stack, "bulk", "status", operation_id, "--token", token)
    assert report.returncode == 0 and "1 done, 0 refused, of 1" in report.stdout


# -- the dashboard: the Schedules list, and "retry all failed of this type" ------------------------
from .test_dashboard import browser, click, confirm, open_dashboard, text, wait_for  # noqa: E402,F401


def test_the_dashboard_lists_schedules_and_retries_all_failed_of_a_type_after_counting(
    stack: RunningStack,
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    token = stack.token("dash-bulk")
    body = {"name": "weekly", "type": "system.echo", "payload": 1, "cron": "cron(0 9 ? * MON *)"}
    assert stack.request("POST", "/schedules", body, token)[0] == 201
    failed = []
    for _ in range(2):
        status, job = stack.request(
            "POST", "/jobs", {"type": "system.fail", "payload": {"failTimes": 1, "permanent": True}}, token
        )
        assert status == 202
        failed.append(job["jobId"])
    for job_id in failed:
        stack.wait_for_status(job_id, token, "FAILED")

    open_dashboard(stack, browser, token)
    wait_for(browser).until(lambda _: "weekly" in text(browser, "#schedules"), "the schedule is not listed")
    row = text(browser, "#schedules tbody tr[data-schedule='weekly']")
    assert "cron(0 9 ? * MON *)" in row and "UTC" in row and "yes" in row
    browser.find_element(By.ID, "filter-type").send_keys("system.fail")
    click(browser, "#bulk-retry")
    confirm(browser, "Retry 2 failed system.fail jobs?")  # the count came first, from a dry run
    wait_for(browser).until(lambda _: "completed: 2 of 2 retried" in text(browser, "#bulk-report"))
    status, dry = stack.request("POST", "/jobs/bulk/retry", {"type": "system.fail", "dryRun": True}, token)
    assert status == 200 and dry["matched"] <= 2  # retried; each fails again on its planned failure
