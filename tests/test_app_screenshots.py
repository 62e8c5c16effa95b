"""The four tabs at desktop width, at 420 px and in dark mode, in a real browser.

With ``ACPO_SCREENSHOTS=docs/screenshots`` each view is written there (the README and docs link them);
without it the same views are checked for what a screenshot review looks for: nothing wider than the
window, the result near the top on a phone, the credit column on screen, dark heatmaps in dark mode.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from test_app_browser import BROWSER_ARGS, CHROMIUM, TIMEOUT_MS, write_run

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="browser tests need the system Chromium at "
                                                             "/usr/bin/chromium (apt-get install -y chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install playwright)")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from acpo.resources import ASSETS  # noqa: E402
from conftest import free_port  # noqa: E402

TABS = {"explore": "Explore a trace", "compare": "Compare checkpoints", "runs": "Runs", "batch": "Batch and export"}
VIEWS = {"desktop": dict(width=1400, height=1000), "phone": dict(width=420, height=900)}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    import gradio as gr
    from app.callbacks import Explorer
    from app.layout import CSS, build_app

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("shots")
    write_run(root)
    demo = build_app(Explorer([ASSETS, root]))
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        css=CSS, theme=gr.themes.Soft())
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def show(page, tab: str) -> None:
    """Open ``tab`` and fill it with what a user sees after its main button."""
    name = TABS[tab]
    if page.get_by_role("tab", name=name).count():
        page.get_by_role("tab", name=name).click()
    else:  # a narrow window folds the other tabs into a menu
        page.locator('button[aria-label="More tabs"]').click()
        page.locator(".overflow-dropdown button", has_text=name).click()
    if tab == "compare":
        page.get_by_role("button", name="Compare", exact=True).click()
        page.wait_for_function("document.querySelectorAll('#acpo-compare .acpo-heatmap').length === 3")
    elif tab == "runs":
        page.get_by_role("button", name="Open", exact=True).click()
        page.wait_for_selector(".acpo-verdict")
    elif tab == "batch":
        from app.loaders import DEFAULT_SAMPLES

        page.locator("#acpo-batch-file input[type=file]").set_input_files(str(DEFAULT_SAMPLES))
        page.wait_for_selector("#acpo-batch-file >> text=sample_traces.jsonl")
        page.get_by_role("button", name="Explain all").click()
        page.wait_for_function("document.querySelector('#acpo-fidelity').innerText.includes('mean_logprob')")
        import json

        failed = [json.loads(line) for line in DEFAULT_SAMPLES.read_text().splitlines() if '"reward": 0.0' in line]
        worked = next(r for r in failed if "\n" in r["completion"])
        page.locator("#acpo-batch-rows").get_by_text(worked["problem_id"], exact=True).first.click()
        page.wait_for_selector("#acpo-batch-heatmap .acpo-step")
    page.wait_for_timeout(500)


@pytest.mark.parametrize("view", ["desktop", "phone", "dark"])
def test_the_four_tabs_fit_the_window_and_follow_the_theme(app, view):
    folder = os.environ.get("ACPO_SCREENSHOTS")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        page = browser.new_page(viewport=VIEWS.get(view, VIEWS["desktop"]))
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app + ("?__theme=dark" if view == "dark" else "?__theme=light"))
        page.wait_for_selector("#acpo-verdict")
        for tab in TABS:
            show(page, tab)
            if folder:
                Path(folder).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(folder) / f"app-{tab}-{view}.png"), full_page=True)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= page.viewport_size["width"] + 1, (tab, width)  # nothing wider than the window
            if tab == "explore" and view == "phone":  # the result comes before the inputs on a phone
                top = page.locator("#acpo-explore-heatmap").bounding_box()["y"]
                assert top < 1000, top
            if tab == "explore":  # the chosen method's credit is the second column of the step table
                headers = page.locator("#acpo-steps thead th").all_inner_texts()
                assert [h.strip() for h in headers[:2]][1].startswith("credit_"), headers[:3]
            if view == "dark":  # heatmaps and charts are drawn dark, not as white boxes
                box = page.locator(".acpo-heatmap").first
                assert box.evaluate("e => getComputedStyle(e).filter") != "none", tab
        browser.close()
