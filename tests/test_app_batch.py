"""The Batch tab without a server: a row the model cannot score is skipped, not the file; every method's
heatmap; the per-completion and fidelity tables as CSV; the credit CSV carries the prompt, label and methods."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import acpo  # noqa: E402
from acpo.models import load_policy  # noqa: E402
from acpo.tasks import first_error_step, get_task  # noqa: E402
from conftest import char_tokenizer, save, tiny_llama  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from app.callbacks import Explorer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("batch")
    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=0, context=128)
    save(model, tok, root / "m")
    task = get_task("arith")
    problems = task.generate(4, level=1, seed=3)
    rows = []
    for k, p in enumerate(problems):
        wrong = p.solution.replace("=", "=1", 1).replace(f"#### {p.answer}", f"#### {int(p.answer) + 1}")
        completion = wrong if k % 2 else p.solution  # odd rows: the first step and the answer wrong
        rows.append({"prompt": p.prompt, "completion": completion, "answer": p.answer, "family": "arith"})
    rows.insert(2, {"prompt": problems[0].prompt, "completion": "1+1=2\n" * 30 + "#### 2", "answer": "2",
                    "family": "arith"})  # longer than the model's 128-token context
    f = root / "rollouts.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dict(root=root, model=str(root / "m"), file=f, rows=rows, problems=problems,
                explorer=Explorer([root], default_model=str(root / "m")))


def test_one_over_long_row_is_skipped_with_a_note_and_the_rest_explained(world):
    methods = ["info_gain", "mean_logprob"]
    (summary, _, _, credit_csv, fidelity, rows, state, _, rows_csv, fidelity_csv) = world["explorer"].batch(
        str(world["file"]), "", world["model"], False, methods, "lines", "#### ", 10, progress=lambda *a, **k: None)
    assert "**4 completions**" in summary and "1 row(s) skipped" in summary and "row 2:" in summary
    assert "context" in summary
    credits = pd.read_csv(credit_csv, keep_default_na=False)
    assert sorted(set(credits["row"])) == [0, 1, 3, 4]  # the file's own row numbers, row 2 left out
    # independent reference: the core on the four scorable rows, and the checker's labels
    good = [r for i, r in enumerate(world["rows"]) if i != 2]
    model, tok = load_policy(world["model"])
    expected = acpo.explain_batch(model, tok, [r["prompt"] for r in good], [r["completion"] for r in good],
                                  method=methods, segmentation="lines", answers=[r["answer"] for r in good],
                                  probe="#### ",
                                  rewards=[float(r["completion"] == p.solution) for r, p in zip(good, world["problems"])])
    want = pd.concat([t.to_frame() for t in expected], ignore_index=True)
    assert credits["credit_info_gain"].to_numpy() == pytest.approx(want["credit_info_gain"].to_numpy(), abs=1e-5)
    labels = []
    for r, p, t in zip(good, world["problems"], expected):
        check = get_task("arith").check(p, r["completion"])
        step = first_error_step(check, t.steps)
        labels += [-1 if step is None else step] * len(t.steps)
    assert list(credits["first_error_step"]) == labels
    assert set(credits["methods"]) == {"info_gain,mean_logprob"} and set(credits["checkpoint"]) == {world["model"]}
    assert list(credits.drop_duplicates("row")["prompt"]) == [r["prompt"] for r in good]
    # the per-completion and fidelity tables, downloadable
    per_row = pd.read_csv(rows_csv)
    assert list(per_row["row"]) == [0, 1, 3, 4] and "found info_gain" in per_row.columns
    assert set(pd.read_csv(fidelity_csv)["method"]) == set(methods)
    # one heatmap per method for a clicked row, each with its verdict
    html = world["explorer"].batch_trace_at(state, 1)
    assert html.count('class="acpo-batch-method"') == 2
    assert 'data-method="info_gain"' in html and 'data-method="mean_logprob"' in html
    fixed = world["explorer"].batch_trace_at(state, 1, "fixed", 0.5)
    assert fixed.count('data-scale="0.5"') == 2


def test_a_file_no_row_of_which_can_be_scored_says_why(world, tmp_path):
    f = tmp_path / "long.jsonl"
    f.write_text(json.dumps({"prompt": "Q: 1+1=?\n", "completion": "1+1=2\n" * 40}) + "\n")
    with pytest.raises(Exception, match="no row of 'long.jsonl' could be explained; row 0: .*context"):
        world["explorer"].batch(str(f), "", world["model"], False, ["info_gain"], "lines", "#### ", 10,
                                progress=lambda *a, **k: None)


def test_a_files_own_first_error_column_is_the_ground_truth(world, tmp_path):
    """A plain rollout file with ``first_error_step`` (index under the chosen segmentation, -1 for none):
    those labels, not a checker's, grade the credits; a label past the last step labels nothing."""
    import gradio as gr

    rows = [dict(r, first_error_step=label) for r, label in zip(
        [r for i, r in enumerate(world["rows"]) if i != 2], [-1, 1, -1, 9])]
    f = tmp_path / "labelled.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary, *_, state, _, _, _ = world["explorer"].batch(
        str(f), "", world["model"], False, ["mean_logprob"], "lines", "#### ", 10, progress=lambda *a, **k: None)
    assert state["errors"] == [None, 1, None, None]  # row 3's label 9 is past its steps
    assert "**1 failed completions have a human-labelled first wrong step**" in summary
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(dict(rows[0], first_error_step="two")) + "\n")
    with pytest.raises(gr.Error, match="column 'first_error_step' of row 0 is 'two'; it is the index of the first"):
        world["explorer"].batch(str(bad), "", world["model"], False, ["mean_logprob"], "lines", "#### ", 10,
                                progress=lambda *a, **k: None)
