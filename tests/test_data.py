"""Dataset loading: the sample files, field detection, and the errors users will hit."""

from __future__ import annotations

import json
import sys
import types
import warnings
from pathlib import Path

import pandas as pd
import pytest

from acpo.data import extract_gold, last_boxed, load_problems, load_step_labelled
from acpo.rewards import hash_answer_reward, math_verify_reward

DATA = Path(__file__).parent / "data"


def _load_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_problems(*args, **kwargs)


def test_gsm8k_jsonl_gives_hash_answers_and_skips_the_unanswered_row():
    with pytest.warns(UserWarning, match="skipped 1 row"):
        problems = load_problems(DATA / "gsm8k_sample.jsonl")
    assert [p.answer for p in problems] == ["22", "69", "7", "2,500"]
    assert problems[0].prompt.startswith("Q: A baker fills 6 trays") and problems[0].prompt.endswith("?\n")
    assert problems[0].solution.endswith("#### 22")  # GSM8K solutions are already in step format
    assert {p.family for p in problems} == {"dataset"} and [p.id for p in problems][:2] == [
        "gsm8k_sample-0",
        "gsm8k_sample-1",
    ]
    # The gold answers are what the hash reward compares against.
    assert hash_answer_reward(None, ["#### 2500"], answer=[problems[3].answer]) == [1.0]


def test_math_csv_gives_boxed_answers():
    problems = load_problems(DATA / "math_sample.csv")
    assert [p.answer for p in problems] == ["\\frac{1}{2}", "4", "3\\sqrt{2}", "\\frac{1}{2}", "180"]
    assert all(p.solution == "" for p in problems)  # MATH solutions are free-form, not step format
    assert math_verify_reward(None, ["\\boxed{0.5}"], answer=[problems[0].answer]) == [1.0]


def test_math_parquet_loads_the_same_rows_as_the_csv():
    from_parquet = load_problems(DATA / "math_sample.parquet")
    from_csv = load_problems(DATA / "math_sample.csv")
    assert [(p.prompt, p.answer) for p in from_parquet] == [
        (p.prompt, p.answer) for p in (from_csv[0], from_csv[1], from_csv[2], from_csv[4])
    ]


def test_custom_field_names(tmp_path):
    path = tmp_path / "mine.csv"
    pd.DataFrame({"q": ["1+1?", "2+2?"], "final": ["2", "\\boxed{4}"]}).to_csv(path, index=False)
    problems = load_problems(path, question_field="q", answer_field="final")
    assert [(p.prompt, p.answer) for p in problems] == [("Q: 1+1?\n", "2"), ("Q: 2+2?\n", "4")]


def test_limit():
    assert len(_load_quietly(DATA / "gsm8k_sample.jsonl", limit=2)) == 2


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "1+1?", "target": "2"}\n')
    with pytest.raises(ValueError, match=r"columns \['prompt', 'target'\]; expected question/answer or problem/solution"):
        load_problems(path)
    with pytest.raises(ValueError, match=r"no column 'result'.*available columns: \['prompt', 'target'\]"):
        load_problems(path, question_field="prompt", answer_field="result")


def test_empty_dataset_is_an_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("question,answer\n")
    with pytest.raises(ValueError, match="has no rows"):
        load_problems(path)


def test_all_rows_unparseable_is_an_error(tmp_path):
    path = tmp_path / "noanswers.jsonl"
    path.write_text('{"question": "q1", "answer": "line one\\nline two"}\n')
    with pytest.raises(ValueError, match="no usable rows"), pytest.warns(UserWarning, match="skipped 1 row"):
        load_problems(path)


def test_unreadable_and_missing_files(tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet")
    with pytest.raises(ValueError, match="could not read .*broken.parquet' as PARQUET"):
        load_problems(broken)
    odd = tmp_path / "data.xlsx"
    odd.write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported file type '.xlsx'"):
        load_problems(odd)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_problems(tmp_path / "absent.jsonl")


def test_hub_names_go_through_datasets_load_dataset(monkeypatch):
    calls = []

    class FakeDataset:
        def to_pandas(self):
            return pd.DataFrame({"question": ["3 apples and 4 more?"], "answer": ["3+4=7\n#### 7"]})

    def fake_load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        return FakeDataset()

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load_dataset))
    problems = load_problems("openai/gsm8k", config="main", split="test")
    assert calls == [("openai/gsm8k", "main", "test")]
    assert [(p.id, p.answer) for p in problems] == [("openai_gsm8k-0", "7")]


def test_hub_failure_says_what_was_tried(monkeypatch):
    def failing(name, config=None, split=None):
        raise ConnectionError("offline")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=failing))
    with pytest.raises(ValueError, match="'nobody/nothing' is not an existing file.*offline"):
        load_problems("nobody/nothing")


@pytest.mark.parametrize(
    ("text", "gold"),
    [
        ("work\n#### 42", "42"),
        ("so $\\boxed{\\frac{a}{b}}$ and not \\boxed{1}", "1"),  # the last box
        ("$\\boxed{x^{2}+1}$", "x^{2}+1"),  # nested braces
        ("72", "72"),
        ("a long worked solution\nwithout any final answer", None),
    ],
)
def test_extract_gold(text, gold):
    assert extract_gold(text) == gold


def test_last_boxed_unbalanced_is_none():
    assert last_boxed("\\boxed{1") is None


# --- step-labelled solutions -----------------------------------------------------------------------------------

PROCESSBENCH_FIXTURE = DATA / "processbench"


def test_processbench_file_gives_steps_and_labels():
    rows = load_step_labelled(PROCESSBENCH_FIXTURE / "gsm8k.json")
    raw = json.loads((PROCESSBENCH_FIXTURE / "gsm8k.json").read_text())
    assert len(rows) == len(raw) == 12
    assert [r.label for r in rows] == [r["label"] for r in raw]
    assert {r.label for r in rows} >= {-1, 0} and any(r.label > 0 for r in rows)
    first = rows[0]
    assert (first.id, first.problem, list(first.steps), first.generator) == (
        raw[0]["id"], raw[0]["problem"], raw[0]["steps"], raw[0]["generator"])


def test_processbench_through_datasets_load_dataset_reads_a_local_dataset_folder():
    """The hub code path (``datasets.load_dataset(name, split=...)``) on a local folder laid out as the hub's."""
    by_file = load_step_labelled(PROCESSBENCH_FIXTURE / "gsm8k.json")
    by_dataset = load_step_labelled(str(PROCESSBENCH_FIXTURE), split="gsm8k")
    assert by_dataset == by_file


def test_prm800k_label_is_the_first_step_rated_minus_one():
    rows = load_step_labelled(DATA / "prm800k_sample.jsonl")
    # nested rows: the chosen completion, else the first; 0 is neutral, not an error
    assert [r.steps for r in rows[:2]] == [("First 3 * 4 = 12.", "Then 2 + 12 = 15."),
                                           ("10 - 4 = 6.", "# Answer\n\n6")]
    assert [r.label for r in rows] == [1, -1, 0]
    assert rows[0].problem == "What is 2 + 3 * 4?"


def test_step_labelled_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"problem": "p", "steps": ["a", "b"], "label": 2}]))
    with pytest.raises(ValueError, match=r"row 0: label 2 is not a step index \(0..1\) or -1"):
        load_step_labelled(bad)
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n")
    with pytest.raises(ValueError, match="a step-labelled file needs problem, steps, label"):
        load_step_labelled(plain)
