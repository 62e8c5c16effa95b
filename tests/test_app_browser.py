"""The app in a real browser (headless system Chromium through Playwright), as a new user sees it.

The bundled demo policy and sample traces, plus a run folder written here (a
perturbed copy of the demo policy as a second checkpoint), so every tab has
something to show. Set ``ACPO_SCREENSHOTS=DIR`` to write the four tabs'
screenshots there (the README's come from ``test_app_screenshots.py``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="browser tests need the system Chromium at /usr/bin/chromium "
                                       "(apt-get install -y chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install playwright)")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import acpo  # noqa: E402
from acpo.models import DEMO_POLICY, load_policy  # noqa: E402
from acpo.tasks import TASKS, Problem, first_error_step  # noqa: E402
from app.loaders import ASSETS, DEFAULT_SAMPLES  # noqa: E402
from conftest import free_port  # noqa: E402

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 120_000


def write_run(root: Path) -> Path:
    """A run folder: metrics, the demo policy and a perturbed copy as checkpoints, saved traces."""
    run = root / "runs" / "demo-run"
    model, tok = load_policy(DEMO_POLICY)
    for step, noise in ((20, 0.1),):  # one checkpoint beside the demo policy: Compare shows the two by default
        torch.manual_seed(step)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(noise * torch.randn_like(p) * p.abs().mean())
        model.save_pretrained(run / "checkpoints" / f"step-{step}")
        tok.save_pretrained(run / "checkpoints" / f"step-{step}")
    rows = [{"step": s, "reward": 0.3 + 0.01 * s, "entropy": 0.8 - 0.01 * s, "loss": 0.1, "kl": 0.001 * s,
             "stage": 1 if s < 10 else 2} for s in range(21)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = [json.loads(line) for line in DEFAULT_SAMPLES.read_text().splitlines() if line.strip()]
    failed = [s for s in samples if s["reward"] == 0 and "\n" in s["completion"]][:4]
    traces = acpo.explain_batch(model, tok, [s["prompt"] for s in failed], [s["completion"] for s in failed],
                                method="mean_logprob", segmentation="lines", rewards=[0.0] * len(failed),
                                meta=[{"prompt_id": s["problem_id"], "completion_id": "0"} for s in failed])
    frames = []
    for s, t in zip(failed, traces):
        check = TASKS[s["family"]].check(Problem("x", s["family"], 1, s["prompt"], s["answer"]), s["completion"])
        f = t.to_frame()
        f["prompt"], f["method"] = s["prompt"], "mean_logprob"
        f["first_error_step"] = first_error_step(check, t.steps)
        frames.append(f)
    (run / "traces").mkdir()
    pd.concat(frames, ignore_index=True).to_parquet(run / "traces" / "step-20.parquet")
    return run


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from app.callbacks import Explorer
    from app.layout import CSS, build_app

    import gradio as gr

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("browser")
    run = write_run(root)
    explorer = Explorer([ASSETS, root])
    demo = build_app(explorer)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        css=CSS, theme=gr.themes.Soft())
    yield {"url": f"http://127.0.0.1:{port}/", "explorer": explorer, "run": run}
    demo.close()


@pytest.fixture(scope="module")
def page(app):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app["url"])
        page.wait_for_selector("#acpo-verdict")
        yield page
        browser.close()


def shot(page, name: str) -> None:
    folder = os.environ.get("ACPO_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def field(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first.input_value()


def table(page, selector: str) -> pd.DataFrame:
    """A gradio Dataframe's visible cells as strings (its body is drawn as rows of grid cells, virtualised)."""
    page.locator(selector).scroll_into_view_if_needed()  # the body's rows are drawn once it is on screen
    page.wait_for_selector(f"{selector} [role=gridcell]")
    headers = [h.strip() for h in page.locator(f"{selector} [role=columnheader]").all_inner_texts()]
    rows = [[c.strip() for c in r.locator("[role=gridcell]").all_inner_texts()]
            for r in page.locator(f"{selector} [role=row]").all()]
    rows = [r for r in rows if any(r)]
    width = min(len(headers), min((len(r) for r in rows), default=len(headers)))
    return pd.DataFrame([r[:width] for r in rows], columns=headers[:width])


def test_the_first_screen_says_whether_the_credit_found_the_checkers_first_wrong_step(page, app):
    verdict = page.locator("#acpo-verdict").inner_text().strip()
    prompt, completion = field(page, "acpo-prompt"), field(page, "acpo-completion")
    answer, checker = field(page, "acpo-answer"), field(page, "acpo-checker")
    method = field(page, "acpo-method")
    assert method == app["explorer"].first_method == "mean_logprob"  # the best cheap method in the published table
    why = page.locator("#acpo-why").inner_text()
    best = app["explorer"].fidelity.query("credit == 'mean_logprob'").iloc[0]
    assert f"{best['top1']:.0%}" in why and f"AUROC {best['auroc']:.2f}" in why
    # the truth, computed here: the checker's first wrong step and the credit's lowest step
    model, tok = load_policy(DEMO_POLICY)
    check = TASKS[checker].check(Problem("x", checker, 1, prompt, answer), completion)
    trace = acpo.explain(model, tok, prompt, completion, method=method, segmentation="lines", answer=answer)
    error = first_error_step(check, trace.steps)
    blamed = int(torch.argmin(trace.credits[method]))
    assert error is not None
    if blamed == error:
        assert verdict.startswith(f"✓ credit found the first wrong step (step {error})")
    else:
        assert verdict.startswith(f"✗ credit missed: it blamed step {blamed}; the first wrong step is step {error}")
    page.get_by_role("button", name="Explain", exact=True).click()
    page.wait_for_function("document.querySelector('#acpo-verdict').innerText.includes('credit')")
    page.wait_for_selector("#acpo-explore-heatmap .acpo-step")
    shot(page, "app-explore.png")


def test_compare_panels_share_one_scale(page, app):
    page.get_by_role("tab", name="Compare checkpoints").click()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.wait_for_function("document.querySelectorAll('#acpo-compare .acpo-heatmap').length === 3")
    scales = page.eval_on_selector_all("#acpo-compare .acpo-heatmap", "els => els.map(e => e.dataset.scale)")
    legends = page.eval_on_selector_all("#acpo-compare .acpo-legend", "els => els.map(e => e.innerText)")
    assert scales[0] == scales[1] and legends[0] == legends[1]
    shot(page, "app-compare.png")


def test_runs_tab_opens_the_newest_run_and_its_traces_with_a_verdict(page, app):
    page.get_by_role("tab", name="Runs").click()
    page.get_by_role("button", name="Open", exact=True).click()
    page.wait_for_selector("text=21 logged steps")
    page.wait_for_selector(".acpo-verdict")
    assert re.match(r"^[✓✗–]", page.locator(".acpo-verdict").first.inner_text())
    shot(page, "app-runs.png")


def test_the_batch_fidelity_table_equals_the_benchmarks_numbers(page, app):
    page.get_by_role("tab", name="Batch and export").click()
    page.locator("#acpo-batch-file input[type=file]").set_input_files(str(DEFAULT_SAMPLES))
    page.wait_for_selector("#acpo-batch-file >> text=sample_traces.jsonl")
    page.get_by_role("button", name="Explain all").click()
    page.wait_for_function("document.querySelector('#acpo-fidelity').textContent.includes('mean_logprob')")
    got = table(page, "#acpo-fidelity")
    methods = list(got["method"])
    spec = importlib.util.spec_from_file_location("credit_fidelity", "bench/credit_fidelity.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    model, tok = load_policy(DEMO_POLICY)
    expected = bench.file_fidelity(model, tok, DEFAULT_SAMPLES, methods)
    for col in ["traces", "top1", "top1_lo", "top1_hi", "auroc", "auroc_lo", "auroc_hi", "chance_top1"]:
        assert got[col].astype(float).to_numpy() == pytest.approx(expected[col].to_numpy(), rel=1e-3, abs=1e-4), col
    failed = [json.loads(line) for line in DEFAULT_SAMPLES.read_text().splitlines() if '"reward": 0.0' in line]
    worked = next(r for r in failed if "\n" in r["completion"])
    page.locator("#acpo-batch-rows").get_by_text(worked["problem_id"], exact=True).first.click()
    page.wait_for_selector("#acpo-batch-heatmap .acpo-step")
    assert re.match(r"^[✓✗]", page.locator("#acpo-batch-heatmap .acpo-verdict").first.inner_text())
    shot(page, "app-batch.png")
