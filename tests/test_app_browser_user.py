"""The app in a real browser as a new user meets it, with no run folder: the bundled policies only.

Headless system Chromium through Playwright, as in ``test_app_browser.py``.
"""

from __future__ import annotations

import os
import re

import pytest
import torch

from test_app_browser import BROWSER_ARGS, CHROMIUM, TIMEOUT_MS, field

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="browser tests need the system Chromium at "
                                                             "/usr/bin/chromium (apt-get install -y chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install playwright)")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from acpo.resources import ASSETS  # noqa: E402
from app.loaders import sample_label  # noqa: E402
from conftest import free_port  # noqa: E402


@pytest.fixture(scope="module")
def fresh_app(tmp_path_factory):
    """The app as `python app/main.py` starts it in a fresh clone: assets/ and an empty runs/ folder."""
    import gradio as gr
    from app.callbacks import Explorer
    from app.layout import CSS, build_app

    torch.set_num_threads(2)
    explorer = Explorer([ASSETS, tmp_path_factory.mktemp("runs")])
    demo = build_app(explorer)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        css=CSS, theme=gr.themes.Soft())
    yield {"url": f"http://127.0.0.1:{port}/", "explorer": explorer}
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, fresh_app):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(fresh_app["url"])
    page.wait_for_selector("#acpo-verdict")
    yield page
    page.close()


def type_into(page, elem_id: str, text: str) -> None:
    """Type as a user does (fill fires the input event a user's typing fires)."""
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(text)


def field_becomes(page, elem_id: str, value: str) -> None:
    page.wait_for_function(
        "([id, v]) => document.querySelector(`#${id} textarea, #${id} input`).value === v", arg=[elem_id, value])


def verdict_says(page, text: str) -> None:
    page.wait_for_function("t => document.querySelector('#acpo-verdict').innerText.includes(t)", arg=text)


def test_a_typed_problem_is_not_scored_with_the_previous_samples_reward(page, fresh_app):
    """After a sample (reward 0.0), typing a new problem and its correct working must not keep reward 0."""
    assert field(page, "acpo-reward") == "0.0"  # the first screen is a failed sample trace
    type_into(page, "acpo-prompt", "Q: 2+3*4=?\n")
    field_becomes(page, "acpo-reward", "")  # editing the problem cleared the derived reward
    type_into(page, "acpo-completion", "3*4=12\n2+12=14\n#### 14")
    type_into(page, "acpo-answer", "14")
    page.get_by_role("button", name="Explain", exact=True).click()
    verdict_says(page, "reward 1.0 (")
    verdict = page.locator("#acpo-verdict").inner_text()
    assert re.search(r"reward 1\.0 \((the step checker's answer verdict|the final answer against the reference)",
                     verdict)
    # a reward typed after the edit is used, and the verdict says it was typed
    type_into(page, "acpo-reward", "0")
    page.get_by_role("button", name="Explain", exact=True).click()
    verdict_says(page, "reward 0.0 (typed in the Reward box)")
    # picking a sample trace fills its own reward, which its own fields keep
    correct = next(r for r in fresh_app["explorer"].samples if r.get("reward") == 1.0)
    page.locator("#acpo-sample input").click()
    page.get_by_role("option", name=sample_label(correct)).click()
    field_becomes(page, "acpo-completion", correct["completion"])
    page.wait_for_timeout(1000)  # the change events of the filled fields have run
    assert field(page, "acpo-reward") == "1.0"


def test_compare_with_no_run_starts_on_a_selection_that_works_or_says_why_not(page, fresh_app):
    page.get_by_role("tab", name="Compare checkpoints").click()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.wait_for_function("!document.querySelector('#acpo-compare').innerText.includes('Comparing…')")
    if len(fresh_app["explorer"].compare_choices()) >= 2:  # the real-model demo policy and its base are installed
        page.wait_for_function("document.querySelectorAll('#acpo-compare .acpo-heatmap').length === 3")
    else:
        assert "Only one model is available" in page.locator("#acpo-compare-note").inner_text()
        assert "Not compared" in page.locator("#acpo-compare").inner_text()


def test_a_failed_explain_does_not_stay_on_explaining(page):
    type_into(page, "acpo-completion", "   ")
    page.get_by_role("button", name="Explain", exact=True).click()
    page.wait_for_selector("#acpo-explore-heatmap >> text=Not explained")
