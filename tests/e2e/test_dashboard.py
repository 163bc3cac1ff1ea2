"""End to end: the web dashboard (and the /docs page) in headless Chromium, clicked as an
operator would. Destructive actions ask in the page's own <dialog id="confirm">, which the tests
answer with #confirm-yes."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import RunningStack

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip(
            f"no browser to drive: need one of {', '.join(BROWSERS)} and chromedriver on the PATH "
            "(`make test` installs Debian's chromium and chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1400,900", f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)  # no driver download
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(browser: Any, timeout: float = 20) -> Any:
    """A wait that looks again when the page re-rendered what it was reading (the page redraws
    a table when its data changed)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, ignored_exceptions=(StaleElementReferenceException,))


def click(browser: Any, css: str, timeout: float = 20) -> None:
    """Click what `css` finds once it is shown and enabled; the page re-renders its tables when
    the data changes, so a row found a moment ago may be gone: find it again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def attempt(driver: Any) -> bool:
        try:
            element = driver.find_element(By.CSS_SELECTOR, css)
            if not (element.is_displayed() and element.is_enabled()):
                return False
            element.click()
            return True
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    wait_for(browser, timeout).until(attempt, f"nothing clickable at {css}")


def text(browser: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    found: str = browser.find_element(By.CSS_SELECTOR, css).text
    return found


def shown(browser: Any, css: str) -> bool:
    from selenium.webdriver.common.by import By

    return bool(browser.find_element(By.CSS_SELECTOR, css).is_displayed())


def open_dashboard(stack: RunningStack, browser: Any, token: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(stack.api_url + "/dashboard")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "use-token").click()


def confirm(browser: Any, expected: str) -> None:
    """Answer the page's confirmation dialog, after checking what it asks."""
    wait_for(browser).until(lambda _: shown(browser, "#confirm"), "no confirmation was asked")
    assert expected in text(browser, "#confirm-title")
    click(browser, "#confirm-yes")
    wait_for(browser).until(lambda _: not shown(browser, "#confirm"))


def test_an_operator_cancels_a_job_from_the_dashboard_and_sees_it_change(
    stack: RunningStack, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    ops = stack.token("ops", "--admin")
    status, job = stack.request("POST", "/jobs", {"type": "system.echo", "delaySeconds": 3600}, ops)
    assert status == 202
    wait = wait_for(browser)
    row = f'#jobs tr[data-job-id="{job["jobId"]}"]'

    # Given the dashboard, opened with no token: it asks for one
    open_dashboard(stack, browser, ops)
    # Then it shows the queues, the cards and the job, PENDING
    wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, row), "PENDING"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#queues tbody tr")) == 3
    assert browser.find_element(By.ID, "card-pending").text.isdigit()
    assert [r.get_attribute("data-window") for r in browser.find_elements(By.CSS_SELECTOR, "#rates tbody tr")] == [
        "1m", "5m", "60m",
    ]  # fmt: skip
    # And its times carry the date
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text(browser, f"{row} td:nth-child(7)"))
    # And once the job is counted (the stream consumer folds it in), the Pending card shows it
    wait.until(lambda _: int(browser.find_element(By.ID, "card-pending").text) >= 1)
    # When the operator clicks Cancel on it, and confirms
    click(browser, f"{row} button[data-action=cancel]")
    confirm(browser, "Cancel job")
    # Then the row turns CANCELLED, and the API agrees
    wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, row), "CANCELLED"))
    assert stack.request("GET", f"/jobs/{job['jobId']}", token=ops)[1]["status"] == "CANCELLED"
    # And the token stays with this tab only
    assert browser.execute_script("return sessionStorage.getItem('tarefa-token')") == ops
    assert browser.execute_script("return localStorage.length") == 0
    shot = Path(os.environ.get("TAREFA_DASHBOARD_SCREENSHOT", tmp_path / "dashboard.png"))
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_the_dashboard_pauses_and_resumes_a_queue(stack: RunningStack, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    ops = stack.token("ops", "--admin")
    open_dashboard(stack, browser, ops)
    wait = wait_for(browser)
    low = '#queues tr[data-priority="LOW"]'
    wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, low), "running"))
    click(browser, f"{low} button[data-action=pause]")
    wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, low), "paused"))
    click(browser, f"{low} button[data-action=resume]")
    wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, low), "running"))


def test_a_user_sees_their_own_jobs_and_no_queue_figures(stack: RunningStack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    carol, dave = stack.token("carol"), stack.token("dave")
    mine = stack.request("POST", "/jobs", {"type": "system.echo", "payload": "carol's"}, carol)[1]
    theirs = stack.request("POST", "/jobs", {"type": "system.echo", "payload": "dave's"}, dave)[1]

    # Given the dashboard with a token that is not an admin's
    open_dashboard(stack, browser, carol)
    # Then it lists the user's job (GET /queues answered 403 in the same refresh)
    wait_for(browser).until(
        lambda _: browser.find_elements(By.CSS_SELECTOR, f'#jobs tr[data-job-id="{mine["jobId"]}"]')
    )
    # And only the user's jobs
    users = wait_for(browser).until(
        lambda _: {td.text for td in browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr td:nth-child(6)")}
    )
    assert users == {"carol"}
    assert not browser.find_elements(By.CSS_SELECTOR, f'#jobs tr[data-job-id="{theirs["jobId"]}"]')
    # And no error, no queue figures, and a short note saying why
    assert not shown(browser, "#error"), text(browser, "#error")
    assert "This route is for admins" not in browser.find_element(By.TAG_NAME, "body").text
    assert not shown(browser, "#admin-panels")
    assert shown(browser, "#admin-note") and "for admins" in text(browser, "#admin-note")
    assert "carol" in text(browser, "#who") and "user" in text(browser, "#who")


def test_an_admin_reads_a_failed_jobs_error_in_its_detail(
    stack: RunningStack, browser: Any, tmp_path: Path
) -> None:
    ops = stack.token("ops", "--admin")
    payload = {"failTimes": 1, "permanent": True}
    status, job = stack.request("POST", "/jobs", {"type": "system.fail", "payload": payload}, ops)
    assert status == 202
    stack.wait_for_status(job["jobId"], ops, "FAILED")
    failed = stack.request("GET", f"/jobs/{job['jobId']}", token=ops)[1]
    assert failed["error"] and failed["errorDetails"]

    # Given the dashboard, when the admin clicks the failed job
    open_dashboard(stack, browser, ops)
    click(browser, f'#jobs tr[data-job-id="{job["jobId"]}"] a.job')
    # Then its detail shows the error and errorDetails (pretty-printed), the payload, the attempts
    wait = wait_for(browser)
    wait.until(lambda _: shown(browser, "#detail") and text(browser, "#detail-error") == failed["error"])
    assert text(browser, "#detail-error-details") == json.dumps(failed["errorDetails"], indent=2)
    shown_payload = text(browser, "#detail-payload")  # JSON numbers: 0.0 shows as 0, as JS prints it
    assert (
        shown_payload.startswith('{\n  "failTimes": 1,\n') and json.loads(shown_payload) == failed["payload"]
    )
    assert text(browser, "#detail-attempts") == f"1 of {failed['maxAttempts']}"
    assert text(browser, "#detail-status") == "FAILED" and text(browser, "#detail-dead") == "no"
    # And a timeline ending in the outcome
    steps = text(browser, "#detail-timeline")
    assert steps.index("Created") < steps.index("Processing started") < steps.index("FAILED")
    # And the actions the API allows on a FAILED job
    assert shown(browser, "#detail-retry") and shown(browser, "#detail-cancel")
    shot = Path(os.environ.get("TAREFA_DASHBOARD_JOB_SCREENSHOT", tmp_path / "dashboard-job.png"))
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_an_admin_purges_a_dead_letter_after_confirming(stack: RunningStack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    ops = stack.token("ops", "--admin")
    listed = "/queues/medium/dead-letters?limit=100"
    before = {i["jobId"] for i in stack.request("GET", listed, token=ops)[1]["items"]}
    # Given a poison message sent straight to the MEDIUM queue: the worker dead-letters it at once
    sent = stack.sqs().send_message(
        QueueUrl=stack.state["queues"]["MediumQueue"], MessageBody=json.dumps({"type": "no.such.type"})
    )
    job_id = sent["MessageId"]
    stack.wait_for_status(job_id, ops, "FAILED")  # recorded after the message is in the DLQ
    row = f'#dlq-table tr[data-dlq-job-id="{job_id}"]'

    # When the admin browses MEDIUM's dead letters
    open_dashboard(stack, browser, ops)
    click(browser, '#queues tr[data-priority="MEDIUM"] button[data-action=browse]')

    def listed_in_the_page(_: Any) -> bool:
        if browser.find_elements(By.CSS_SELECTOR, row):
            return True
        if text(browser, "#dlq-report").startswith("Browsed"):  # a sweep held it hidden: look again
            click(browser, "#dlq-reload")
        return False

    wait_for(browser).until(listed_in_the_page)
    assert "no.such.type" in text(browser, row) and "FAILED" in text(browser, row)
    assert "Browsing is a receive" in text(browser, "#dlq .note")
    # And opens its job, dead-lettered, and tries Retry: the API refuses, and the page says why
    click(browser, f"{row} a.job")
    wait_for(browser).until(lambda _: shown(browser, "#detail") and text(browser, "#detail-id") == job_id)
    wait_for(browser).until(lambda _: text(browser, "#detail-dead").startswith("yes"))
    click(browser, "#detail-retry")
    wait_for(browser).until(lambda _: shown(browser, "#detail-problem"))
    problem = text(browser, "#detail-problem")
    assert problem.startswith("409 INVALID_STATE: ") and "redrive or purge it there" in problem
    click(browser, "#detail-close")
    # And purges it instead, confirming
    click(browser, f"{row} button[data-action=purge]")
    confirm(browser, "Purge")
    wait_for(browser).until(lambda _: text(browser, "#dlq-report").startswith("Purged"))
    assert text(browser, "#dlq-report") == f"Purged 1: {job_id}"
    assert not browser.find_elements(By.CSS_SELECTOR, row)
    # Then the API agrees: the DLQ holds nothing of it (only what was there before), its job FAILED
    assert {i["jobId"] for i in stack.request("GET", listed, token=ops)[1]["items"]} == before
    job = stack.request("GET", f"/jobs/{job_id}", token=ops)[1]
    assert (job["status"], job["error"]) == ("FAILED", "Purged from the dead-letter queue")


def test_without_a_token_the_pages_say_how_to_get_one(stack: RunningStack, browser: Any) -> None:
    # Given a new tab (nothing in its sessionStorage), the dashboard says how to get a token
    browser.get(stack.api_url + "/dashboard")
    wait_for(browser).until(lambda _: shown(browser, "#no-token"), "the dashboard says nothing")
    instructions = text(browser, "#no-token")
    assert "tarefa token --user NAME" in instructions and "tarefa token --user NAME --admin" in instructions
    assert not shown(browser, "#app")
    # And so does /docs, instead of a blank page
    browser.get(stack.api_url + "/docs")
    wait_for(browser).until(lambda _: shown(browser, "#help"), "/docs says nothing")
    instructions = text(browser, "#help")
    assert "tarefa token --user NAME" in instructions and "tarefa token --user NAME --admin" in instructions


def test_the_docs_page_pretty_prints_json_responses(stack: RunningStack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    alice = stack.token("alice")
    browser.get(stack.api_url + "/docs")
    browser.find_element(By.ID, "token").send_keys(alice)
    browser.find_element(By.ID, "save").click()
    route = 'details[data-route="GET /job-types"]'
    click(browser, f"{route} summary")
    click(browser, f"{route} button")
    wait_for(browser).until(lambda _: text(browser, f"{route} pre").startswith("200"))
    _, body = text(browser, f"{route} pre").split("\n", 1)
    assert body.startswith('{\n  "items": [\n    {\n      "name": ')  # indented by 2
    assert json.loads(body) == stack.request("GET", "/job-types", token=alice)[1]


def test_the_job_list_pages_with_the_cursor(stack: RunningStack, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    ops = stack.token("ops", "--admin")
    for n in range(21):  # one more than a page; delayed, so they stay PENDING
        assert (
            stack.request("POST", "/jobs", {"type": "system.echo", "payload": n, "delaySeconds": 3600}, ops)[
                0
            ]
            == 202
        )

    def ids() -> list[str]:
        return [
            r.get_attribute("data-job-id") for r in browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
        ]

    # Given the PENDING jobs, 20 a page
    open_dashboard(stack, browser, ops)
    wait = wait_for(browser)
    wait.until(lambda _: len(ids()) == 20)
    Select(browser.find_element(By.ID, "filter-status")).select_by_visible_text("PENDING")
    wait.until(
        lambda _: (
            text(browser, "#page-info").startswith("Page 1 ")
            and browser.find_element(By.ID, "next").is_enabled()
        )
    )
    first = wait.until(lambda _: (found := ids()) and len(found) == 20 and found)
    assert not browser.find_element(By.ID, "prev").is_enabled()
    # When the operator goes to the next page, then back
    click(browser, "#next")
    wait.until(lambda _: text(browser, "#page-info").startswith("Page 2 "))
    second = wait.until(lambda _: (found := ids()) and found != first and found)
    assert not set(first) & set(second)
    click(browser, "#prev")
    wait.until(lambda _: text(browser, "#page-info").startswith("Page 1 ") and ids() == first)


def test_an_organiser_reads_their_event_s_figures_on_the_dashboard(stack: RunningStack, browser: Any) -> None:
    """A workload's panel (tarefa.panels): the guests workload's events and an event's metrics."""
    from selenium.webdriver.common.by import By

    erin = stack.token("erin")
    body = {
        "slug": "festa-painel",
        "name": "Festa do Painel",
        "startsAt": "2026-07-01T22:00:00+01:00",
        "capacity": 40,
        "promoters": [{"slug": "rita", "name": "Rita", "team": "Equipa B"}],
    }
    status, created = stack.request("POST", "/events", body, erin)
    assert status == 201, created
    event_id = created["event"]["eventId"]
    registration = {
        "eventId": event_id,
        "promoterSlug": "rita",
        "phone": "+351936000111",
        "firstName": "Ana",
        "lastName": "Lopes",
        "password": "Painel-pass-1",
    }
    status, accepted = stack.request("POST", "/public/guests/register", registration)
    assert status == 202, accepted
    done = wait_for(browser, 60).until(
        lambda _: (
            (job := stack.request("GET", f"/jobs/{accepted['jobId']}", token=erin)[1])["status"]
            in ("COMPLETED", "FAILED")
            and job
        ),
        "the registration never finished",
    )
    assert done["status"] == "COMPLETED" and done["result"]["success"] is True, done

    # Given the dashboard with the organiser's token
    open_dashboard(stack, browser, erin)
    # Then the Events panel lists the event and shows its figures: one guest, brought by Rita
    panel = '.workload-panel[data-panel="Events"]'
    wait_for(browser).until(lambda _: event_id in text(browser, panel), "the event is not listed")
    wait_for(browser).until(
        lambda _: "per promoter > rita" in text(browser, panel).lower(), text(browser, panel)
    )
    figures = {
        dt.text.lower(): dd.text
        for dt, dd in zip(
            browser.find_elements(By.CSS_SELECTOR, f"{panel} dl.facts dt"),
            browser.find_elements(By.CSS_SELECTOR, f"{panel} dl.facts dd"),
            strict=True,
        )
    }
    assert figures["guests > total"] == "1" and figures["guests > per promoter > rita"] == "1", figures
    assert figures["jobs > success rate"] == "100.0%", figures
    assert not shown(browser, "#error"), text(browser, "#error")
