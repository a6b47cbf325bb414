"""The dashboard in a real headless Chromium, against the real `suggest` of the e2e stack with a project
annotated in the real Label Studio: the page loads, shows the numbers /metrics holds, lists the review
queue in the report's order with links to the right Label Studio tasks, lays out on a phone, and the
screenshots are saved (benchmarks/out/screenshots/)."""

from __future__ import annotations

import pytest

from tests.browser import chromium, screenshot
from tests.e2e.conftest import LABEL_CONFIG
from tests.e2e.labelstudio_server import HttpServer, LabelStudioClient, choice_result, loop_state, poll

pytestmark = pytest.mark.e2e

N_TASKS = 70
LABELLED = 50
SHARED = 16
OTHER = {"fresh": "rotten", "rotten": "fresh"}


@pytest.fixture(scope="module")
def project(ls: LabelStudioClient, suggest_server: HttpServer, rt_tasks: list[tuple[str, str]]) -> int:
    pid = ls.create_project("e2e dashboard", LABEL_CONFIG)["id"]
    sample = rt_tasks[80:80 + N_TASKS]
    ls.import_tasks(pid, [{"text": text} for text, _ in sample])
    truth = dict(sample)
    tasks = sorted(ls.tasks(pid), key=lambda t: t["id"])
    ls.connect_ml(pid, suggest_server.url, "suggest dashboard")
    people = [ls.request("POST", "/api/users/", json={"email": f"{n}{pid}@example.com", "username": f"{n}{pid}"})["id"]
              for n in ("dana", "eli")]
    for i, task in enumerate(tasks[:LABELLED]):
        label = truth[task["data"]["text"]]
        given = OTHER[label] if i in (20, 30, 40) else label
        ls.request("POST", f"/api/tasks/{task['id']}/annotations",
                   json={"result": choice_result(given), "completed_by": people[0], "lead_time": 2.0})
        if i < SHARED:
            theirs = OTHER[label] if i % 4 == 0 else label
            ls.request("POST", f"/api/tasks/{task['id']}/annotations",
                       json={"result": choice_result(theirs), "completed_by": people[1], "lead_time": 2.0})
    poll("a quality report over every labelled task", lambda: loop_state(suggest_server, pid) or {},
         lambda m: (m.get("quality") or {}).get("counts", {}).get("tasks") == LABELLED
         and m["quality"].get("model_version") == m.get("model_version")
         and (m.get("standing") or {}).get("model_version") == m.get("model_version")
         # settled: no retrain, push, analysis or prune still to come (the page and the snapshot must agree)
         and (m.get("loop") or {}).get("version") == m.get("model_version") and not m["loop"].get("pushing")
         and not m.get("training") and not m.get("analysing") and not m.get("maintaining"), 180)
    return pid


def test_the_page_shows_the_projects_numbers_and_links_to_its_tasks(
    ls: LabelStudioClient, suggest_server: HttpServer, project: int
):
    from selenium.webdriver.common.by import By

    metrics = loop_state(suggest_server, project)
    report = metrics["quality"]
    with chromium() as driver:
        driver.get(f"{suggest_server.url}/ui")
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-project="{project}"]')
        row.find_element(By.TAG_NAME, "a").click()
        assert driver.current_url.endswith(f"/ui/projects/{project}")
        assert driver.find_element(By.ID, "labels").text == str(metrics["labels"])
        assert driver.find_element(By.ID, "model-version").text == metrics["model_version"]
        assert driver.find_element(By.ID, "suspect-count").text == str(report["counts"]["suspects"])
        rows = driver.find_elements(By.CSS_SELECTOR, "#review-list tr.suspect")
        listed = [int(r.get_attribute("data-task")) for r in rows]
        top = [s["task_id"] for s in report["top_suspects"]]
        assert top and listed[:len(top)] == top
        ls_url = metrics["label_studio"]["url"].rstrip("/")
        for r in rows[:5]:
            href = r.find_element(By.TAG_NAME, "a").get_attribute("href")
            assert href == f"{ls_url}/projects/{project}/data?task={r.get_attribute('data-task')}"
        task = rows[0].get_attribute("data-task")  # the link opens that task in the real Label Studio
        assert ls.request("GET", f"/api/tasks/{task}")["project"] == project
        alpha = report["agreement"]["sentiment"]["krippendorff_alpha"]
        assert f"{alpha:.3f}" in driver.find_element(By.ID, "agreement").text
        curve = [(float(p["labels"]), p["out_of_fold"]["estimate"]) for p in metrics["standing"]["learning_curve"]
                 if (p.get("out_of_fold") or {}).get("estimate") is not None]
        drawn = [(float(c.get_attribute("data-x")), float(c.get_attribute("data-y"))) for c in
                 driver.find_elements(By.CSS_SELECTOR, '#learning-curve circle.point[data-series="out-of-fold"]')]
        assert curve and drawn == curve  # one point per version, at its labels and its out-of-fold estimate
        estimates = metrics["standing"]["estimates"]
        best = next(estimates[k] for k in ("audit", "out_of_fold", "agreement")  # the unbiased one first
                    if (estimates.get(k) or {}).get("estimate") is not None)
        assert driver.find_element(By.ID, "accuracy").text == f"{best['estimate']:.3f}"
        queued = driver.find_elements(By.CSS_SELECTOR, "#next-batch li")
        assert [int(q.get_attribute("data-task")) for q in queued] == metrics["loop"]["next_tasks"][:10]
        first = ls.request("GET", f"/api/tasks/{queued[0].get_attribute('data-task')}")
        assert first["data"]["text"][:40] in queued[0].text  # what the next task holds, from the store
        points = driver.find_elements(By.CSS_SELECTOR, '#labels-over-time circle.point')
        assert points and float(points[-1].get_attribute("data-y")) == metrics["annotations"]
        screenshot(driver, "dashboard-project")
        driver.set_window_size(390, 844)  # a phone: one column, nothing wider than the screen
        driver.get(f"{suggest_server.url}/ui/projects/{project}")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        wide = driver.execute_script(  # what sticks out, to say so if anything does
            "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 400)"
            ".slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + (e.getAttribute('class') || ''))")
        assert width <= 400, (width, wide)
        screenshot(driver, "dashboard-phone")
