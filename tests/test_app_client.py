"""The launched app, driven through ``gradio_client`` as a user's script would.

One app per module, on 127.0.0.1, with tiny models saved in a temp folder
(nothing from the hub, nothing from ``assets/``), so these run anywhere in
well under a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

gradio_client = pytest.importorskip("gradio_client")
from conftest import char_tokenizer, free_port, save, tiny_llama  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import acpo  # noqa: E402
import gradio as gr  # noqa: E402
from acpo.models import load_policy  # noqa: E402
from acpo.tasks import get_task  # noqa: E402

EXPLAIN_DEFAULTS = dict(trust_remote_code=False, reward="", checker="arith", method="info_gain", segmentation="lines",
                        probe="#### ", view="steps: credit")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Allowed root with two tiny checkpoints, bad model folders, a sample file and a run folder."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("allowed")
    tok = char_tokenizer()
    a = save(tiny_llama(len(tok), seed=0, context=128), tok, root / "ckpt-a")
    b = save(tiny_llama(len(tok), seed=1, context=128), tok, root / "ckpt-b")

    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(tiny_llama(len(tok), seed=0, context=128),
                          LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(root / "lora")
    adapter_cfg = json.loads((root / "lora" / "adapter_config.json").read_text())
    adapter_cfg["base_model_name_or_path"] = a  # the adapter sits on ckpt-a
    (root / "lora" / "adapter_config.json").write_text(json.dumps(adapter_cfg))

    pickled = root / "pickled"
    pickled.mkdir()
    shutil.copy(root / "ckpt-a" / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"not really a pickle")
    remote = root / "remote"
    shutil.copytree(root / "ckpt-a", remote)
    cfg = json.loads((remote / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (remote / "config.json").write_text(json.dumps(cfg))

    task = get_task("arith")
    problems = task.generate(2, level=1, seed=0)
    wrong = problems[1].solution.replace("=", "=1", 1)  # first step's result is wrong
    samples = []
    for p, completion in [(problems[0], problems[0].solution), (problems[1], wrong)]:
        result = task.check(p, completion)
        samples.append(dict(id=p.id, family="arith", level=1, prompt=p.prompt, completion=completion, answer=p.answer,
                            reward=float(result.answer_correct), first_error=result.first_error,
                            step_char_spans=[list(s) for s in result.step_char_spans]))
    (root / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))

    run = write_run(root / "runs" / "demo-run", a, b, problems)
    return dict(root=root, a=a, b=b, lora=str(root / "lora"), pickled=str(pickled), remote=str(remote),
                samples=samples, run=str(run), tok=tok)


def write_run(run, ckpt0, ckpt10, problems):
    """A run folder in train.py's format, written by hand."""
    (run / "checkpoints").mkdir(parents=True)
    shutil.copytree(ckpt0, run / "checkpoints" / "step-0")
    shutil.copytree(ckpt10, run / "checkpoints" / "step-10")
    (run / "config.yaml").write_text("method: hapo\nmodel: tiny\nseed: 0\n")
    rows = []
    for step in range(11):
        row = {"step": step, "reward": 0.3 + 0.02 * step, "entropy": 1.0 - 0.05 * step, "loss": 0.1,
               "credit/mean": 0.0, "credit/std": 0.1, "stage": 1 if step < 6 else 2,
               "hapo/pos_high": 0.3, "hapo/pos_low": 0.2, "hapo/neg_high": 0.3, "hapo/neg_low": 0.2}
        if step >= 6:
            row["kl"] = 0.01 * (step - 5)
        if step % 5 == 0:
            row["eval/pass@1"] = 0.25 + 0.01 * step
        rows.append(row)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model, tok = load_policy(ckpt10)
    traces = acpo.explain_batch(model, tok, [p.prompt for p in problems], [p.solution for p in problems],
                                method="hapo", segmentation="lines", rewards=[1.0, 0.0],
                                meta=[{"run": "demo-run", "checkpoint": "step-10", "prompt_id": p.id,
                                       "completion_id": "0"} for p in problems])
    frames = []
    for p, t in zip(problems, traces):
        f = t.to_frame()
        f["prompt"], f["completion"], f["answer"], f["method"] = p.prompt, p.solution, p.answer, "hapo"
        f["first_error_step"] = -1
        frames.append(f)
    (run / "traces").mkdir()
    pd.concat(frames, ignore_index=True).to_parquet(run / "traces" / "step-10.parquet")
    return run


@pytest.fixture(scope="module")
def client(world):
    from app.callbacks import Explorer
    from app.layout import build_app

    explorer = Explorer([world["root"]], default_model=world["a"], samples_path=world["root"] / "samples.jsonl",
                        max_file_mb=0.01)
    demo = build_app(explorer)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        show_error=True)
    yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    demo.close()


def explain(client, **kwargs):
    args = {**EXPLAIN_DEFAULTS, **kwargs}
    return client.predict(
        args["model"], args["trust_remote_code"], args["prompt"], args["completion"], args["answer"], args["reward"],
        args["checker"], args["method"], args["segmentation"], args["probe"], args["view"], api_name="/explain",
    )


def test_explain_a_sample_trace_and_its_csv_equals_the_core_table(client, world):
    s = world["samples"][1]
    heat, verdict, _, table, csv_path, _, _ = explain(client, model=world["a"], prompt=s["prompt"],
                                                completion=s["completion"], answer=s["answer"])
    assert heat.count('class="acpo-step"') == 3

    model, tok = load_policy(world["a"])
    expected = acpo.explain(model, tok, s["prompt"], s["completion"], method="info_gain", segmentation="lines",
                            answer=s["answer"], reward=s["reward"], probe="#### ").to_frame()
    blamed = int(expected["credit_info_gain"].idxmin())
    said = ("✓ credit found the first wrong step (step 0)" if blamed == 0
            else f"✗ credit missed: it blamed step {blamed}; the first wrong step is step 0")
    assert verdict.startswith(said)
    got = pd.read_csv(csv_path, keep_default_na=False)
    assert list(got.columns)[:len(expected.columns)] == list(expected.columns)  # Trace.to_frame(), in its order
    assert set(got["checkpoint"]) == {world["a"]} and set(got["method"]) == {"info_gain"}
    assert set(got["prompt"]) == {s["prompt"]} and set(got["first_error_step"]) == {0}
    assert list(got["text"]) == list(expected["text"])
    for col in ["step", "n_tokens", "entropy_mean", "entropy_max", "credit_info_gain", "answer_logprob", "adv_mean_info_gain"]:
        assert got[col].to_numpy() == pytest.approx(expected[col].to_numpy(), abs=1e-5), col
    assert table["headers"][:3] == ["step", "credit_info_gain", "text"]  # the credit beside the step


def test_the_api_lists_every_action_by_name(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/explain", "/render_view", "/sample", "/new_problem", "/load_sample", "/compare", "/open_run",
            "/run_traces", "/run_trace_view", "/batch_explain"} <= names


def test_view_toggle_rerenders_the_last_trace_of_the_session(client, world):
    s = world["samples"][0]
    explain(client, model=world["a"], prompt=s["prompt"], completion=s["completion"], answer=s["answer"])
    html = client.predict("tokens: entropy", api_name="/render_view")
    assert html.count("<span title=\"token ") == len(s["completion"])  # one span per character token


def test_problems_from_samples_and_dataset_files(client, world, tmp_path):
    labels = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/load_sample"]
    label = labels["parameters"][0]["type"]["enum"][1]
    prompt, completion, answer, reward, checker = client.predict(label, api_name="/load_sample")
    assert (prompt, completion, checker) == (world["samples"][1]["prompt"], world["samples"][1]["completion"], "arith")
    data = tmp_path / "gsm.jsonl"
    data.write_text(json.dumps({"question": "What is 2+3?", "answer": "2+3=5\n#### 5"}) + "\n")
    prompt, _, answer, _, checker = client.predict(handle_file(str(data)), "", 0, api_name="/load_dataset_problem")
    assert (prompt, answer, checker) == ("Q: What is 2+3?\n", "5", "free-form computations")  # any prompt


def test_token_view_and_sampling(client, world):
    completion, reward, sent = client.predict(world["a"], False, "Q: 1+2=?\n", 1.0, 0, 10, api_name="/sample")
    assert isinstance(completion, str) and reward == "" and sent == "Q: 1+2=?\n"  # no chat template: as typed
    prompt, _, answer, _, checker = client.predict("arith", 1, 0, api_name="/new_problem")
    assert checker == "arith" and prompt.startswith("Q: ")


def test_compare_two_checkpoints(client, world):
    s = world["samples"][0]
    html, _, table, csv_path = client.predict([world["a"], world["b"]], False, s["prompt"], s["completion"],
                                              s["answer"], "info_gain", "lines", "#### ", api_name="/compare")
    assert html.count('class="acpo-heatmap"') == 3  # two checkpoints and their difference
    headers = table["headers"]
    diff = next(h for h in headers if h.startswith("diff "))
    rows = pd.DataFrame(table["data"], columns=headers)
    a_col = next(h for h in headers if h.startswith("credit_info_gain @") and "ckpt-a" in h)
    b_col = next(h for h in headers if h.startswith("credit_info_gain @") and "ckpt-b" in h)
    assert rows[diff].to_numpy() == pytest.approx((rows[b_col] - rows[a_col]).to_numpy(), rel=1e-3, abs=1e-4)
    assert len(pd.read_csv(csv_path)) == 2 * len(rows)


def test_compare_a_base_model_with_its_lora_adapter(client, world):
    s = world["samples"][0]
    html, _, table, _ = client.predict([world["a"], world["lora"]], False, s["prompt"], s["completion"], s["answer"],
                                       "info_gain", "lines", "#### ", api_name="/compare")
    rows = pd.DataFrame(table["data"], columns=table["headers"])
    diff = next(h for h in table["headers"] if h.startswith("diff "))
    assert html.count('class="acpo-heatmap"') == 3 and rows[diff].abs().max() > 0  # the adapter changes the credits


def test_open_a_run_and_browse_its_traces(client, world):
    summary, _, _, config, steps, _ = client.predict(world["run"], api_name="/open_run")
    assert "11 logged steps" in summary and "stage 2 from step 6" in summary and "method: hapo" in config
    table, _, _ = client.predict(world["run"], "10", api_name="/run_traces")
    assert len(table["data"]) == 2
    key = f"{table['data'][0][0]} / {table['data'][0][1]}"
    html = client.predict(world["run"], "10", key, "credit_hapo", api_name="/run_trace_view")
    assert "acpo-step" in html


def test_batch_explain_an_uploaded_file(client, world, tmp_path):
    problems = get_task("linear").generate(3, level=1, seed=0)
    f = tmp_path / "rollouts.jsonl"
    f.write_text("".join(json.dumps({"prompt": p.prompt, "completion": p.solution, "answer": p.answer, "reward": 1.0})
                         + "\n" for p in problems))
    summary, _, _, csv_path, *_ = client.predict(handle_file(str(f)), "", world["a"], False, ["info_gain"], "lines",
                                                 "#### ", 10, api_name="/batch_explain")
    model, tok = load_policy(world["a"])
    expected = acpo.explain_batch(model, tok, [p.prompt for p in problems], [p.solution for p in problems],
                                  method="info_gain", segmentation="lines", answers=[p.answer for p in problems],
                                  rewards=[1.0] * 3, probe="#### ")
    got = pd.read_csv(csv_path)
    assert "3 completions" in summary
    assert got["credit_info_gain"].to_numpy() == pytest.approx(
        pd.concat([t.to_frame() for t in expected])["credit_info_gain"].to_numpy(), abs=1e-5)


@pytest.mark.parametrize(
    "model_key, fields, message",
    [
        ("outside", {}, "outside the folders"),
        ("missing", {}, "does not exist"),
        ("pickled", {}, "pickle"),
        ("remote", {}, "trust_remote_code"),
        ("a", {"completion": "   "}, "completion is empty"),
        ("a", {"completion": "1+1=2\n" * 40}, "longer than the model's context"),
    ],
)
def test_bad_explain_input_gives_a_clear_error_and_the_app_stays_up(client, world, model_key, fields, message):
    model = {"outside": "/etc", "missing": str(world["root"] / "nope")}.get(model_key) or world[model_key]
    s = world["samples"][0]
    args = dict(model=model, prompt=s["prompt"], completion=s["completion"], answer=s["answer"]) | fields
    with pytest.raises(AppError, match=message):
        explain(client, **args)
    heat, *_ = explain(client, model=world["a"], prompt=s["prompt"], completion=s["completion"], answer=s["answer"])
    assert "acpo-step" in heat


def test_bad_uploads_and_paths_are_refused(client, world, tmp_path):
    def batch(upload, path=""):
        return client.predict(upload, path, world["a"], False, ["info_gain"], "lines", "#### ", 10,
                              api_name="/batch_explain")

    cols = tmp_path / "cols.csv"
    cols.write_text("question,response\nq,r\n")
    with pytest.raises(AppError, match="no column 'prompt'"):
        batch(handle_file(str(cols)))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("prompt,completion\nq,caf\xe9\n".encode("latin-1"))
    with pytest.raises(AppError, match="not UTF-8"):
        batch(handle_file(str(latin)))
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"prompt": "p", "completion": "x" * 20000}) + "\n")  # over this app's 0.01 MB limit
    with pytest.raises(AppError, match="the limit is"):
        batch(handle_file(str(big)))
    with pytest.raises(AppError, match="outside the folders"):
        batch(None, "/etc/passwd")
    with pytest.raises(AppError, match="outside the folders"):
        client.predict("/etc", api_name="/open_run")


def test_first_screen_shows_a_failed_trace_that_shows_its_working(world, tmp_path):
    from app.callbacks import Explorer
    from app.layout import initial_view

    correct, worked = [dict(s) for s in world["samples"]]  # the second one's first step is wrong
    worked.update(reward=0.0, first_error=0)
    unworked = dict(worked, completion=f"#### {int(worked['answer']) + 1}", step_char_spans=[[0, 6]], id="unworked")
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [correct, unworked, worked]))
    explorer = Explorer([world["root"], tmp_path], default_model=world["a"], samples_path=path)
    view = initial_view(explorer, explorer.sample_choices())
    assert view["completion"] == worked["completion"]


# --- verdicts, resampling credit, colour scales -------------------------------------------------


def failed_rows(n=8, seed=0):
    """Synthetic failed completions that show working: step k's result is off by one, so is the answer."""
    rows = []
    for i, p in enumerate(get_task("arith").generate(n, level=2, seed=seed)):
        lines = p.solution.split("\n")
        k = i % (len(lines) - 1)
        head, _, result = lines[k].rpartition("=")
        lines[k] = f"{head}={int(result) + 1}"
        lines[-1] = f"#### {int(p.answer) + 1}"
        rows.append({"id": f"mine-{i}", "family": "arith", "prompt": p.prompt, "completion": "\n".join(lines),
                     "answer": p.answer, "reward": 0.0})
    return rows


def test_uniform_credit_blames_no_step_and_never_says_step_none(client, world):
    s = world["samples"][1]
    heat, verdict, *_ = explain(client, model=world["a"], prompt=s["prompt"], completion=s["completion"],
                                answer=s["answer"], method="uniform")
    assert "None" not in verdict and "lowest credit" not in heat
    assert verdict.startswith("– uniform gives its lowest credit to more than one step, so it blames no step")


def test_the_resampling_credit_from_the_app_equals_the_core_call(client, world):
    s = world["samples"][1]
    heat, verdict, _, table, csv_path, *_ = client.predict(
        world["a"], False, s["prompt"], s["completion"], s["answer"], "", "none", "mc_reset", "lines", "#### ",
        "steps: credit", 3, 1.0, 16, 6, api_name="/explain")
    model, tok = load_policy(world["a"])
    expected = acpo.explain(model, tok, s["prompt"], s["completion"], method=["mc_reset", "info_gain"],
                            segmentation="lines", answer=s["answer"], reward=1.0,
                            method_options={"mc_reset": {"samples": 3, "temperature": 1.0, "batch_size": 16,
                                                         "max_new_tokens": 6, "seed": 0}})
    got = pd.read_csv(csv_path)
    assert got["credit_mc_reset"].to_numpy() == pytest.approx(expected.credits["mc_reset"].numpy(), abs=1e-6)
    assert "mc_reset cost" in verdict and "reward" in verdict


@pytest.mark.parametrize("fields, message", [
    ({"mc_samples": 0}, "continuations per boundary"),
    ({"mc_temperature": 0}, "temperature must be above 0"),
    ({"mc_batch": -1}, "batch size must be a whole number"),
    ({"answer": ""}, "give a reference answer or pick a step checker"),
])
def test_bad_resampling_options_are_refused_and_the_app_still_works(client, world, fields, message):
    s = world["samples"][0]
    args = dict(model=world["a"], prompt=s["prompt"], completion=s["completion"], answer=s["answer"],
                mc_samples=2, mc_temperature=1.0, mc_batch=8, mc_tokens=4) | fields
    with pytest.raises(AppError, match=message):
        client.predict(args["model"], False, args["prompt"], args["completion"], args["answer"], "", "none",
                       "mc_reset", "lines", "#### ", "steps: credit", args["mc_samples"], args["mc_temperature"],
                       args["mc_batch"], args["mc_tokens"], api_name="/explain")
    heat, *_ = explain(client, model=world["a"], prompt=s["prompt"], completion=s["completion"], answer=s["answer"])
    assert "acpo-step" in heat


def test_the_resampling_estimate_counts_the_continuations_before_it_starts(client, world):
    s = world["samples"][0]
    text = client.predict(world["a"], False, s["prompt"], s["completion"], "lines", "mc_reset", 4, 8, 6,
                          api_name="/estimate_resampling")
    assert "3 boundaries × M=4 = 12 continuations" in text and "about" in text


def test_compare_panels_share_one_scale_with_the_checker_outline(client, world):
    import re

    s = world["samples"][1]
    html, *_ = client.predict([world["a"], world["b"]], False, s["prompt"], s["completion"], s["answer"], "info_gain",
                              "lines", "#### ", "arith", api_name="/compare")
    scales = [float(x) for x in re.findall(r'class="acpo-heatmap" data-scale="([^"]+)"', html)]
    model_a, tok = load_policy(world["a"])
    model_b, _ = load_policy(world["b"])
    credits = [acpo.explain(m, tok, s["prompt"], s["completion"], method="info_gain", segmentation="lines",
                            answer=s["answer"], probe="#### ").credits["info_gain"].abs().max().item()
               for m in (model_a, model_b)]
    assert scales[0] == scales[1] == pytest.approx(max(credits), rel=1e-4)
    assert html.count("✗ first error") == 3  # both panels and the difference outline the checker's step 0
    assert "difference:" in html


# --- the defects a first look found ----------------------------------------------------------


@pytest.mark.parametrize("bad", ["nan", "inf", "-Infinity", "one"])
def test_a_non_finite_reward_is_refused_and_the_next_request_works(client, world, bad):
    s = world["samples"][0]
    with pytest.raises(AppError, match="reward"):
        explain(client, model=world["a"], prompt=s["prompt"], completion=s["completion"], answer=s["answer"],
                reward=bad)
    heat, *_ = explain(client, model=world["a"], prompt=s["prompt"], completion=s["completion"], answer=s["answer"])
    assert "acpo-step" in heat


def batch(client, world, path, methods=("info_gain",), max_rows=10, checker="auto (family column, else free-form)"):
    return client.predict(handle_file(str(path)), "", world["a"], False, list(methods), "lines", "#### ", max_rows,
                          checker, api_name="/batch_explain")


def test_batch_refuses_non_finite_rewards_then_still_works(client, world, tmp_path):
    p = get_task("arith").generate(1, level=1, seed=0)[0]
    for i, bad in enumerate(["NaN", "Infinity"]):
        f = tmp_path / f"bad{i}.jsonl"
        f.write_text(f'{{"prompt": {json.dumps(p.prompt)}, "completion": {json.dumps(p.solution)}, "reward": {bad}}}\n')
        with pytest.raises(AppError, match="finite"):
            batch(client, world, f)
    csv = tmp_path / "bad.csv"
    pd.DataFrame({"prompt": [p.prompt], "completion": [p.solution], "reward": ["inf"]}).to_csv(csv, index=False)
    with pytest.raises(AppError, match="not finite numbers"):
        batch(client, world, csv)
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": p.prompt, "completion": p.solution, "reward": 1.0}) + "\n")
    assert "1 completions" in batch(client, world, good)[0]


def test_batch_keeps_known_rewards_beside_a_missing_one_and_computes_rewards_from_answers(client, world, tmp_path):
    problems = get_task("linear").generate(3, level=1, seed=0)
    rows = [{"id": f"r{i}", "prompt": p.prompt, "completion": p.solution, "answer": p.answer} for i, p in
            enumerate(problems)]
    rows[0]["reward"], rows[1]["reward"] = 0.5, None  # row 2 has no reward key at all
    f = tmp_path / "mixed.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary, _, _, csv_path, *_ = batch(client, world, f)
    got = pd.read_csv(csv_path)
    by_id = got.groupby("completion_id")["reward"].first()
    assert by_id.to_dict() == {"r0": 0.5, "r1": 1.0, "r2": 1.0}  # the file's, then the answer's verdict
    assert "2 rewards computed from the answer" in summary
    assert list(got.columns[:4]) == ["run", "checkpoint", "prompt_id", "completion_id"]  # Trace.to_frame()'s order


@pytest.mark.parametrize("rows", [0, -5, 100000])
def test_max_rows_is_validated_and_the_next_batch_works(client, world, tmp_path, rows):
    f = tmp_path / "one.jsonl"
    p = get_task("arith").generate(1, level=1, seed=0)[0]
    f.write_text(json.dumps({"prompt": p.prompt, "completion": p.solution}) + "\n")
    with pytest.raises(AppError, match="Max rows must be a whole number from 1 to 2000|minimum value 1|maximum value 2000"):
        batch(client, world, f, max_rows=rows)
    assert "1 completions" in batch(client, world, f)[0]


def test_max_rows_is_validated_by_the_callback_too(world):
    from app.callbacks import Explorer

    explorer = Explorer([world["root"]], default_model=world["a"])
    for rows in (0, -5, 2.5):
        with pytest.raises(gr.Error, match="Max rows must be a whole number from 1 to 2000"):
            explorer.batch(None, str(world["root"] / "samples.jsonl"), world["a"], False, ["info_gain"], "lines", "#### ",
                           rows)


def test_the_batch_fidelity_table_equals_the_benchmarks_on_the_same_file(client, world, tmp_path):
    import importlib.util

    f = tmp_path / "mine.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in failed_rows(8)))
    methods = ["mean_logprob", "info_gain", "hapo"]
    summary, _, _, _, fidelity, rows, *_ = batch(client, world, f, methods=methods)
    spec = importlib.util.spec_from_file_location("credit_fidelity", "bench/credit_fidelity.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    model, tok = load_policy(world["a"])
    expected = bench.file_fidelity(model, tok, f, methods)
    got = pd.DataFrame(fidelity["data"], columns=fidelity["headers"])
    assert list(got["method"]) == methods
    for col in ["traces", "top1", "top1_lo", "top1_hi", "auroc", "auroc_lo", "auroc_hi", "chance_top1"]:
        assert got[col].astype(float).to_numpy() == pytest.approx(expected[col].to_numpy(), rel=1e-3, abs=1e-4), col
    per = pd.DataFrame(rows["data"], columns=rows["headers"])
    assert list(per["completion_id"]) == [f"mine-{i}" for i in range(8)]  # the file's own ids
    hits = (per["found mean_logprob"] == "✓").mean()
    assert hits == pytest.approx(float(expected.loc[0, "top1"]))
    assert "8 failed completions have a checker-located first wrong step" in summary


FREEFORM_ROWS = [  # rows of no task family: the free-form checker labels them
    {"id": "false-line-1", "completion": "48/2 = 24\n48 + 24 = 73\n#### 73", "answer": "72"},
    {"id": "false-line-0", "completion": "48/2 = 25\n25 + 48 = 73\n#### 73", "answer": "72"},
    {"id": "no-checkable-line", "completion": "She sold some clips.\nThen some more.\n#### 5", "answer": "72"},
    {"id": "answer-right", "completion": "48/2 = 24\n48 + 24 = 72\n#### 72", "answer": "72"},
    {"id": "no-false-line", "completion": "48 * 2 = 96\n96 + 48 = 144\n#### 144", "answer": "72"},
]


def test_batch_labels_rows_of_no_task_with_the_free_form_checker_and_counts_the_rest(world):
    from app.callbacks import Explorer

    f = world["root"] / "freeform.jsonl"
    f.write_text("".join(json.dumps({"prompt": "Q: 48 clips in April, half as many in May: how many?\n", **r}) + "\n"
                         for r in FREEFORM_ROWS))
    explorer = Explorer([world["root"]], default_model=world["a"])
    summary, *_, fidelity, _, state, _, _, _ = explorer.batch(None, str(f), world["a"], False, ["info_gain"], "lines", "#### ", 10)
    assert state["errors"] == [1, 0, None, None, None]  # the false line's step; nothing to locate in the others
    assert "2 failed completions have a checker-located first wrong step" in summary
    for skipped in ("1 no checkable line", "1 answer right", "1 no false line"):
        assert skipped in summary
    assert list(fidelity["traces"]) == [2]
    *_, state, _, _, _ = explorer.batch(None, str(f), world["a"], False, ["info_gain"], "lines", "#### ", 10, checker="none")
    assert state["errors"] == [None] * 5


def test_the_benchmark_labels_a_files_free_form_rows_as_the_batch_tab_does(world, capsys):
    import importlib.util

    from app.callbacks import Explorer

    f = world["root"] / "freeform-bench.jsonl"
    f.write_text("".join(json.dumps({"prompt": "Q: clips?\n", **r}) + "\n" for r in FREEFORM_ROWS))
    spec = importlib.util.spec_from_file_location("credit_fidelity", "bench/credit_fidelity.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    model, tok = load_policy(world["a"])
    expected = bench.file_fidelity(model, tok, f, ["info_gain", "mean_logprob"])
    told = capsys.readouterr().err
    assert "2 of 5 traces labelled" in told and "1 no checkable line" in told and "1 no false line" in told
    got = Explorer([world["root"]], default_model=world["a"]).batch(
        None, str(f), world["a"], False, ["info_gain", "mean_logprob"], "lines", "#### ", 10)[4]
    for col in ["traces", "top1", "auroc", "chance_top1"]:
        assert got[col].astype(float).to_numpy() == pytest.approx(expected[col].to_numpy(), rel=1e-3, abs=1e-4), col


def test_explore_with_the_free_form_checker_outlines_the_first_false_line(client, world):
    row = FREEFORM_ROWS[0]
    _, verdict, *_ = explain(client, model=world["a"], prompt="Q: clips?\n", completion=row["completion"],
                             answer=row["answer"], checker="free-form computations")
    # the free-form checker knows only the arithmetic: its label is the first false equation, and says so
    assert "the first false equation is step 1" in verdict or "found the first false equation (step 1)" in verdict
    assert "dashed outline: the checker's first false equation" in verdict
    _, verdict, *_ = explain(client, model=world["a"], prompt="Q: clips?\n", completion=FREEFORM_ROWS[4]["completion"],
                             answer="72", checker="free-form computations")
    assert "the error is not in the arithmetic" in verdict and "✓" not in verdict


def test_a_clicked_batch_row_opens_its_heatmap(world):
    from app.callbacks import Explorer

    explorer = Explorer([world["root"]], default_model=world["a"])
    f = world["root"] / "clicked.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in failed_rows(3)))
    *_, state, _, _, _ = explorer.batch(None, str(f), world["a"], False, ["info_gain"], "lines", "#### ", 10)
    html = explorer.batch_trace_at(state, 2)
    assert html.count('class="acpo-step"') == len(state["traces"][2].steps)
    assert "first wrong step is step" in html or "found the first wrong step" in html


def test_markup_in_the_reference_answer_is_shown_as_text(client, world):
    s = world["samples"][0]
    _, verdict, *_ = explain(client, model=world["a"], prompt=s["prompt"], completion=s["completion"],
                             answer="**7** <img src=x onerror=alert(1)>", checker="none", reward="1")
    assert "<img" not in verdict and "**7**" not in verdict and "&#42;&#42;7&#42;&#42;" in verdict


def test_messages_do_not_show_the_servers_folders(client, world):
    with pytest.raises(AppError) as err:
        client.predict("/etc", api_name="/open_run")
    assert str(world["root"]) not in str(err.value) and "outside the folders" in str(err.value)


def test_downloads_share_one_folder_the_app_owns(world):
    from app.callbacks import Explorer

    explorer = Explorer([world["root"]], default_model=world["a"])
    s = world["samples"][0]
    *_, csv, _, _, _ = explorer.explain(world["a"], False, s["prompt"], s["completion"], s["answer"], "", "arith", "info_gain",
                                  "lines", "#### ", "steps: credit")
    *_, csv2, _, _, _ = explorer.explain(world["a"], False, s["prompt"], s["completion"], s["answer"], "", "arith", "info_gain",
                                   "lines", "#### ", "steps: credit")
    folder = explorer.downloads.folder
    assert Path(csv).parent == Path(csv2).parent == folder and csv != csv2
    explorer.downloads._dir.cleanup()
    assert not folder.exists()


def test_a_metrics_line_of_a_bad_type_does_not_stop_a_run_from_opening(client, world, tmp_path):
    run = world["root"] / "runs" / "broken-run"
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text('{"step": 0, "reward": 0.5}\n{"step": "one", "reward": "high"}\n'
                                       '{"step": 1, "reward": [1]}\n{"step": 2, "reward": 0.7}\n')
    summary, *_ = client.predict(str(run), api_name="/open_run")
    assert "3 logged steps" in summary and "last reward 0.700" in summary
    newest = client.predict(api_name="/refresh_runs")  # the newest run is the default
    assert (newest["value"] if isinstance(newest, dict) else newest).endswith("broken-run")

# --- what a caller may not do: run a model's code, read outside the allowed folders ---


@pytest.fixture(scope="module")
def outside(tmp_path_factory, world):
    """A folder outside the app's roots: a model, a secret file, a traces folder."""
    out = tmp_path_factory.mktemp("outside")
    shutil.copytree(world["a"], out / "model")
    (out / "secret.txt").write_text("top secret\n")
    (out / "metrics.jsonl").write_text('{"step": 0, "reward": 0.123456}\n')
    return out


def test_remote_code_is_the_servers_decision_not_the_callers(client, world, tmp_path):
    evil = world["root"] / "evil-code"
    shutil.copytree(world["a"], evil)
    marker = tmp_path / "the-models-code-ran"
    cfg = json.loads((evil / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "modeling_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (evil / "config.json").write_text(json.dumps(cfg))
    (evil / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    s = world["samples"][0]
    refused = "does not run a model's own code.*--allow-remote-code"
    with pytest.raises(AppError, match=refused):
        explain(client, model=str(evil), trust_remote_code=True, prompt=s["prompt"], completion=s["completion"],
                answer=s["answer"])
    with pytest.raises(AppError, match=refused):
        client.predict(str(evil), True, "Q: 1+2=?\n", 1.0, 0, 10, api_name="/sample")
    with pytest.raises(AppError, match=refused):
        client.predict([world["a"], str(evil)], True, s["prompt"], s["completion"], s["answer"], "info_gain", "lines",
                       "#### ", api_name="/compare")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": s["prompt"], "completion": s["completion"]}) + "\n")
    with pytest.raises(AppError, match=refused):
        client.predict(handle_file(str(rows)), "", str(evil), True, ["info_gain"], "lines", "#### ", 10,
                       api_name="/batch_explain")
    assert not marker.exists()


@pytest.mark.parametrize("allow", [False, True])
def test_the_remote_code_checkbox_shows_only_where_the_server_allows_it(world, allow):
    from app.main import Explorer, build_app

    demo = build_app(Explorer([world["root"]], default_model=world["a"], allow_remote_code=allow), initial=False)
    boxes = [c["props"] for c in demo.config["components"] if "own code" in str(c["props"].get("label"))]
    assert len(boxes) == 3 and all(b["visible"] is allow for b in boxes)


@pytest.mark.parametrize("link", ["config.yaml", "metrics.jsonl", "traces"])
def test_a_link_inside_a_run_folder_that_leads_outside_is_refused(client, world, outside, link):
    run = world["root"] / "runs" / f"link-{link.split('.')[0]}"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("method: grpo\n")
    (run / "metrics.jsonl").write_text('{"step": 0, "reward": 0.5}\n')
    target = {"config.yaml": outside / "secret.txt", "metrics.jsonl": outside / "metrics.jsonl", "traces": outside}
    (run / link).unlink(missing_ok=True)
    (run / link).symlink_to(target[link])
    with pytest.raises(AppError, match=rf"'.*{link}' is a link to outside the folders this app may read; refused"):
        client.predict(str(run), api_name="/open_run")


def test_a_link_to_a_traces_file_outside_is_refused(client, world, outside):
    run = world["root"] / "runs" / "link-trace-file"
    shutil.copytree(world["run"], run)
    real = outside / "step-10.parquet"
    shutil.move(run / "traces" / "step-10.parquet", real)
    (run / "traces" / "step-10.parquet").symlink_to(real)
    client.predict(str(run), api_name="/open_run")  # the folder itself is fine
    with pytest.raises(AppError, match="traces file .* is a link to outside"):
        client.predict(str(run), "10", api_name="/run_traces")


def test_a_run_folder_linked_in_from_outside_is_not_listed(world, outside):
    from app.loaders import find_runs

    (world["root"] / "runs" / "linked-run").symlink_to(outside, target_is_directory=True)
    assert outside not in [p.resolve() for p in find_runs([world["root"]])]
    assert world["root"] / "runs" / "linked-run" not in find_runs([world["root"]])


def test_a_model_folder_whose_weights_link_outside_is_refused(client, world, outside):
    model = world["root"] / "linked-weights"
    shutil.copytree(world["a"], model)
    (model / "model.safetensors").unlink()
    (model / "model.safetensors").symlink_to(outside / "model" / "model.safetensors")
    s = world["samples"][0]
    with pytest.raises(AppError, match="model file .*model.safetensors' is a link to outside"):
        explain(client, model=str(model), prompt=s["prompt"], completion=s["completion"], answer=s["answer"])


def test_an_adapters_base_model_outside_is_refused_without_telling_if_it_exists(client, world, outside):
    s = world["samples"][0]
    messages = []
    for name, base in [("base-outside", outside / "model"), ("base-missing", outside / "no-such-model")]:
        adapter = world["root"] / name
        shutil.copytree(world["lora"], adapter)
        cfg = json.loads((adapter / "adapter_config.json").read_text())
        cfg["base_model_name_or_path"] = str(base)
        (adapter / "adapter_config.json").write_text(json.dumps(cfg))
        with pytest.raises(AppError) as err:
            explain(client, model=str(adapter), prompt=s["prompt"], completion=s["completion"], answer=s["answer"])
        messages.append(str(err.value).replace(str(base), "BASE"))
    assert "the adapter's base model 'BASE' is outside the folders this app may read" in messages[0]
    assert messages[0] == messages[1]  # the same answer whether the outside folder exists or not


def test_stop_ends_a_running_resampling_credit(world):
    import threading

    from acpo.credit.mc_reset import Cancelled
    from app.callbacks import Explorer

    explorer = Explorer([world["root"]], default_model=world["a"])
    stop, seen = threading.Event(), []
    s = world["samples"][0]
    opts = explorer.resampling_options("arith", s["prompt"], s["answer"], 2, 1.0, 2, 3,
                                       progress=lambda f, desc: seen.append(desc), stop=stop)
    opts["progress"](0, 6)
    stop.set()
    with pytest.raises(Cancelled):
        opts["progress"](2, 6)
    assert seen == ["sampling 0/6 continuations"]


def test_a_processbench_file_opens_in_batch_with_its_human_labels_as_ground_truth(world):
    from app.callbacks import Explorer

    fixture = Path(__file__).parent / "data" / "processbench" / "gsm8k.json"
    f = world["root"] / "processbench.json"
    shutil.copy(fixture, f)
    tok = char_tokenizer()
    long = save(tiny_llama(len(tok), seed=0, context=4096), tok, world["root"] / "ckpt-long")
    rows = json.loads(fixture.read_text())
    summary, *_, fidelity, _, state, _, _, _ = Explorer([world["root"]], default_model=long).batch(
        None, str(f), long, False, ["mean_logprob"], "lines", "#### ", 20)
    assert state["errors"] == [r["label"] if r["label"] >= 0 else None for r in rows]
    assert [[s.text.removesuffix("\n") for s in t.steps] for t in state["traces"]] == [r["steps"] for r in rows]
    errors = [r for r in rows if r["label"] >= 0]
    assert f"{len(errors)} failed completions have a human-labelled first wrong step" in summary
    assert f"{len(rows) - len(errors)} labelled correct (-1)" in summary
    assert list(fidelity["traces"]) == [len(errors)]
