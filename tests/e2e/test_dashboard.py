"""End to end: the web dashboard in headless Chromium, clicked as an operator would."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import RunningStack

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Chromium is not installed: `make test` installs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1400,900", f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no driver download
    try:
        yield driver
    finally:
        driver.quit()


def test_an_operator_cancels_a_job_from_the_dashboard_and_sees_it_change(
    stack: RunningStack, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    ops = stack.token("ops", "--admin")
    status, job = stack.request("POST", "/jobs", {"type": "system.echo", "delaySeconds": 3600}, ops)
    assert status == 202
    wait = WebDriverWait(browser, 20)
    row = f'tr[data-job-id="{job["jobId"]}"]'

    # Given the dashboard, opened with no token: it asks for one
    browser.get(stack.api_url + "/dashboard")
    browser.find_element(By.ID, "token").send_keys(ops)
    browser.find_element(By.ID, "use-token").click()
    # Then it shows the queues, the cards and the job, PENDING
    wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, row), "PENDING"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#queues tbody tr")) == 3
    assert browser.find_element(By.ID, "card-pending").text.isdigit()
    assert [r.get_attribute("data-window") for r in browser.find_elements(By.CSS_SELECTOR, "#rates tbody tr")] == [
        "1m", "5m", "60m",
    ]  # fmt: skip
    # And once the job is counted (the stream consumer folds it in), the Pending card shows it
    wait.until(lambda _: int(browser.find_element(By.ID, "card-pending").text) >= 1)
    # When the operator clicks Cancel on it
    browser.find_element(By.CSS_SELECTOR, f"{row} button").click()
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
    from selenium.webdriver.support.ui import WebDriverWait

    ops = stack.token("ops", "--admin")
    browser.get(stack.api_url + "/dashboard")
    browser.find_element(By.ID, "token").send_keys(ops)
    browser.find_element(By.ID, "use-token").click()
    wait = WebDriverWait(browser, 20)
    low = '#queues tr[data-priority="LOW"]'
    wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, low), "running"))
    browser.find_element(By.CSS_SELECTOR, f"{low} button").click()
    wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, low), "paused"))
    browser.find_element(By.CSS_SELECTOR, f"{low} button").click()  # now labelled Resume
    wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, low), "running"))
