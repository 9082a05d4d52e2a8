#!/usr/bin/env python3
"""The console as a person sees it: headless Chromium (Debian's chromium + chromium-driver) driven by
Selenium against a running tailgate. Run by Tests/EngineTests/ConsoleBrowserTests.swift.

  console_check.py overview URL SCREENSHOTS          the overview's counters advance while traffic flows
  console_check.py pages URL SCREENSHOTS EXPECT.json rules, search, waterfall, hostile input, service graph
  console_check.py nostore URL SCREENSHOTS           an engine without --data: the trace pages say so

Every phase also fails on any browser console error (a CSP violation, a script error), any failed
request, and any dialog a script opened. Prints what it checked; exits 1 with the reason otherwise.
"""
import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def wait(driver, seconds, condition, what):
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.2).until(lambda d: condition(d))
    except TimeoutException:
        raise Failure(f"waited {seconds} s for {what}")


def no_dialog(driver):
    try:
        alert = driver.switch_to.alert
        text = alert.text
        alert.dismiss()
        raise Failure(f"a script opened a dialog: {text!r}")
    except NoAlertPresentException:
        pass


def clean_logs(driver, where):
    """No console error, no failed request (Chromium logs those as SEVERE), no dialog."""
    no_dialog(driver)
    severe = [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
    check(not severe, f"{where}: browser errors: {severe}")
    failed = driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter(e => e.responseStatus >= 400).map(e => e.name + ' ' + e.responseStatus)")
    check(not failed, f"{where}: failed requests: {failed}")


def shot(driver, directory, name):
    path = os.path.join(directory, name + ".png")
    driver.save_screenshot(path)
    print(f"screenshot {path}")


def number(driver, selector):
    # Read in one script: live pages redraw every second (an element found now may be gone next).
    value = driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.dataset.value : null", selector)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def overview(driver, url, screenshots):
    driver.get(url + "/")
    wait(driver, 30, lambda d: (number(d, "#spans-in .value") or 0) > 0, "the overview's first spans")
    spans, decided = number(driver, "#spans-in .value"), number(driver, "#decided .value")
    wait(driver, 30, lambda d: (number(d, "#spans-in .value") or 0) > spans, f"spans in to advance past {spans}")
    wait(driver, 30, lambda d: (number(d, "#decided .value") or 0) > (decided or 0), f"traces decided to advance past {decided}")
    wait(driver, 30, lambda d: d.find_elements(By.CSS_SELECTOR, "#policies tr[data-policy='errors']"), "the errors policy's row")
    rate = driver.execute_script("return document.querySelector('#spans-in .value').textContent")
    check(rate.endswith("/s") and rate != "—/s", f"spans/s shows a rate: {rate!r}")
    print(f"overview: spans in {spans:.0f} -> {number(driver, '#spans-in .value'):.0f}, decided {decided} -> {number(driver, '#decided .value')}, {rate}")
    time.sleep(4)  # a few more points on the sparklines for the picture
    shot(driver, screenshots, "overview")
    clean_logs(driver, "overview")


def pages(driver, url, screenshots, expect):
    # The rules: the file as loaded, each policy with its own decisions.
    driver.get(url + "/#/rules")
    wait(driver, 20, lambda d: d.find_elements(By.ID, "rule-source"), "the rules page")
    source = driver.execute_script("return document.getElementById('rule-source').textContent")
    check(source == expect["rulesSource"], f"the rule file shown differs from the file: {source!r}")
    for policy in expect["policies"]:
        check(driver.find_elements(By.CSS_SELECTOR, f"#policy-decisions tr[data-policy='{policy}']"), f"policy {policy} has a row")
    shot(driver, screenshots, "rules")
    clean_logs(driver, "rules")

    # A search through the form: exactly the error traces of one service.
    driver.get(url + "/#/traces")
    form = wait(driver, 20, lambda d: d.find_elements(By.ID, "search-form"), "the search form")
    service = expect["service"]
    wait(driver, 20, lambda d: d.find_elements(By.CSS_SELECTOR, f"#f-service option[value='{service}']"), f"{service} among the services")
    Select(driver.find_element(By.ID, "f-service")).select_by_value(service)
    Select(driver.find_element(By.ID, "f-status")).select_by_value("error")
    Select(driver.find_element(By.ID, "f-limit")).select_by_value("500")
    driver.find_element(By.ID, "f-submit").click()
    wait(driver, 30, lambda d: d.find_elements(By.ID, "search-summary"), "the search's answer")
    found = {row.get_attribute("data-trace-id") for row in driver.find_elements(By.CSS_SELECTOR, "#search-results tr[data-trace-id]")}
    truth = set(expect["errorTraceIDs"])
    check(found == truth, f"search for {service} errors: {len(found)} found, {len(truth)} expected; "
                          f"missing {sorted(truth - found)[:5]}, unexpected {sorted(found - truth)[:5]}")
    starts = driver.execute_script(
        "return [...document.querySelectorAll('#search-results tr[data-trace-id] td:first-child')].map(td => td.textContent)")
    check(starts == sorted(starts, reverse=True), "results are newest first")
    print(f"search: {len(found)} error traces of {service}, as generated")
    shot(driver, screenshots, "traces")
    clean_logs(driver, "search")

    # A known trace's waterfall: every span, nested as generated; details on click.
    known = expect["knownTrace"]
    driver.get(url + "/#/trace/" + known["id"])
    wait(driver, 20, lambda d: d.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row"), "the waterfall")
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#waterfall .wf-row')].map(r => [r.dataset.spanId, r.dataset.parentId, Number(r.dataset.depth)])")
    check(len(rows) == len(known["spans"]), f"waterfall rows {len(rows)}, spans generated {len(known['spans'])}")
    depth = {span["id"]: span["depth"] for span in known["spans"]}
    parent = {span["id"]: span["parent"] for span in known["spans"]}
    seen = set()
    for span_id, parent_id, row_depth in rows:
        check(span_id in depth, f"row for unknown span {span_id}")
        check(row_depth == depth[span_id], f"span {span_id} drawn at depth {row_depth}, generated at depth {depth[span_id]}")
        check(parent_id == parent[span_id], f"span {span_id} drawn under {parent_id!r}, generated under {parent[span_id]!r}")
        check(not parent_id or parent_id in seen, f"span {span_id} drawn before its parent {parent_id}")
        seen.add(span_id)
    check(driver.find_element(By.ID, "trace-whole").text == "whole", "a whole trace says so")
    policies = [p.get_attribute("data-policy") for p in driver.find_elements(By.CSS_SELECTOR, "#trace-head [data-policy]")]
    check(policies == ["errors"], f"kept by errors, the header says {policies}")
    error_rows = driver.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row[data-error='true']")
    check(len(error_rows) == known["errorSpans"], f"{len(error_rows)} spans marked as errors, {known['errorSpans']} generated")
    error_rows[-1].click()
    wait(driver, 5, lambda d: d.find_elements(By.CSS_SELECTOR, ".wf-detail"), "a span's details")
    print(f"waterfall: {len(rows)} spans nested as generated, {len(error_rows)} errors marked")
    shot(driver, screenshots, "trace")
    clean_logs(driver, "waterfall")

    # Span fields that are markup render as text and run nothing.
    hostile = expect["hostile"]
    driver.get(url + "/#/trace/" + hostile["id"])
    wait(driver, 20, lambda d: d.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row"), "the hostile trace's waterfall")
    names = driver.execute_script("return [...document.querySelectorAll('#waterfall .wf-label .name')].map(e => e.textContent)")
    check(hostile["spanName"] in names, f"the span name shows as text: {names}")
    services = driver.execute_script("return [...document.querySelectorAll('#waterfall .wf-label .svc')].map(e => e.textContent)")
    check(hostile["service"] in services, f"the service name shows as text: {services}")
    for row in driver.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row"):
        row.click()
    details = driver.execute_script("return [...document.querySelectorAll('.wf-detail')].map(e => e.textContent).join('\\n')")
    check(hostile["attributeValue"] in details, "the attribute value shows as text")
    check(hostile["eventName"] in details, "the event name shows as text")
    injected = driver.execute_script(
        "return {scripts: document.scripts.length, images: document.querySelectorAll('main img').length,"
        " bold: document.querySelectorAll('main b').length, svgs: document.querySelectorAll('main svg[onload]').length,"
        " flag: window.__xss === undefined ? null : String(window.__xss)}")
    check(injected == {"scripts": 1, "images": 0, "bold": 0, "svgs": 0, "flag": None}, f"markup from the trace became elements: {injected}")
    print("hostile trace: every field rendered as text, nothing ran")
    shot(driver, screenshots, "hostile")
    clean_logs(driver, "hostile trace")

    # Found through the form by its span name, too.
    driver.get(url + "/#/traces")
    wait(driver, 20, lambda d: d.find_elements(By.ID, "f-name"), "the search form")
    driver.find_element(By.ID, "f-name").send_keys(hostile["spanName"])
    driver.find_element(By.ID, "f-submit").click()
    wait(driver, 30, lambda d: d.find_elements(By.ID, "search-summary"), "the search by the hostile name")
    found = [row.get_attribute("data-trace-id") for row in driver.find_elements(By.CSS_SELECTOR, "#search-results tr[data-trace-id]")]
    check(found == [hostile["id"]], f"searching the hostile span name finds its trace: {found}")
    clean_logs(driver, "hostile search")

    # The service graph: an SVG node per service, the hostile one as text; the edges table.
    driver.get(url + "/#/graph")
    wait(driver, 20, lambda d: d.find_elements(By.CSS_SELECTOR, "#service-graph g.node"), "the service graph")
    nodes = set(driver.execute_script("return [...document.querySelectorAll('#service-graph g.node')].map(g => g.dataset.service)"))
    check(set(expect["services"]) <= nodes, f"graph nodes {sorted(nodes)} lack {sorted(set(expect['services']) - nodes)}")
    check(hostile["service"] in nodes, "the hostile service is a node")
    edges = driver.execute_script("return [...document.querySelectorAll('#edges tbody tr')].map(r => r.cells[0].textContent + '→' + r.cells[1].textContent)")
    check(set(expect["edges"]) <= set(edges), f"edges {edges} lack {sorted(set(expect['edges']) - set(edges))}")
    injected = driver.execute_script("return document.querySelectorAll('main svg[onload], main img, main script').length")
    check(injected == 0, "nothing in the graph became markup")
    print(f"service graph: {len(nodes)} nodes, {len(edges)} edges")
    shot(driver, screenshots, "graph")
    clean_logs(driver, "service graph")

    # Back to the overview: how representative the kept traces are, per service; then the recent
    # kept traces open their trace.
    driver.get(url + "/#/overview")
    wait(driver, 20, lambda d: d.find_elements(By.CSS_SELECTOR, "#fidelity tr[data-service]"), "the fidelity table")
    fidelity = set(driver.execute_script("return [...document.querySelectorAll('#fidelity tr[data-service]')].map(r => r.dataset.service)"))
    check(set(expect["spanServices"]) <= fidelity, f"fidelity rows {sorted(fidelity)} lack {sorted(set(expect['spanServices']) - fidelity)}")
    wait(driver, 20, lambda d: d.find_elements(By.CSS_SELECTOR, "#exemplars a"), "recent kept traces")
    # Clicked in the same script that finds it (the overview redraws every second).
    trace_id = driver.execute_script("const a = document.querySelector('#exemplars a'); a.click(); return a.textContent")
    wait(driver, 20, lambda d: d.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row"), f"exemplar {trace_id}'s waterfall")
    check(driver.find_element(By.ID, "trace-id").text == trace_id, "the exemplar opened its own trace")
    clean_logs(driver, "exemplar")
    print(f"exemplar {trace_id} opened its stored trace")


def without_store(driver, url, screenshots):
    """An engine without --data: the trace pages say so; the overview works."""
    for page in ("#/traces", "#/trace/0123456789abcdef0123456789abcdef"):
        driver.get(url + "/" + page)
        notice = wait(driver, 20, lambda d: d.find_elements(By.CSS_SELECTOR, "main .notice"), f"the notice on {page}")
        text = notice[0].text
        check(text.startswith("Search needs the embedded store: start tailgate with --data DIR."), f"{page} says: {text!r}")
        check(not driver.find_elements(By.ID, "search-form"), f"{page} offers no search without a store")
    shot(driver, screenshots, "no-store")
    driver.get(url + "/#/overview")
    wait(driver, 30, lambda d: (number(d, "#spans-in .value") or 0) > 0, "the overview without a store")
    check(not driver.find_elements(By.CSS_SELECTOR, "#exemplars a"), "recent kept traces are not links without a store")
    clean_logs(driver, "without a store")
    print("without a store: the trace pages say search needs --data; the overview works")


def main():
    phase, url, screenshots = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
    os.makedirs(screenshots, exist_ok=True)
    driver = browser()
    try:
        if phase == "overview":
            overview(driver, url, screenshots)
        elif phase == "nostore":
            without_store(driver, url, screenshots)
        else:
            with open(sys.argv[4]) as f:
                pages(driver, url, screenshots, json.load(f))
    except Failure as failure:
        try:
            shot(driver, screenshots, "failure-" + phase)
        except Exception:
            pass
        print(f"FAILED: {failure}")
        return 1
    finally:
        driver.quit()
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
