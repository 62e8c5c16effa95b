"""Load real problem sets (GSM8K-, MATH-style) as :class:`acpo.tasks.Problem` rows.

``load_problems`` reads a local JSONL / JSON / CSV / Parquet file, or, when
the argument is not an existing path, a Hugging Face dataset through
``datasets.load_dataset``. Field names are configurable; by default they are
detected from the columns:

* GSM8K: ``question`` / ``answer``, the answer text ending with ``#### <number>``;
* MATH: ``problem`` / ``solution``, the final answer in the last ``\\boxed{}``;
* TRL's conversational format: ``prompt`` (a list of chat messages, or a
  string) / ``solution`` or ``answer``.

The gold answer is extracted from the answer field (``####`` line, else the
last ``\\boxed{}``, else the whole field when it is a short plain answer).
Rows where none of that works are skipped with one warning that counts them.
A question column becomes the plain prompt ``"Q: <question>\\n"`` (the format of
the synthetic tasks) and the problem's ``question``, which a chat model gets
inside an instruction (:class:`acpo.prompts.PromptStyle`); a message-list
prompt is kept as it is.

``load_step_labelled`` reads solutions already split into steps with a human label of the earliest wrong
step: ProcessBench (``Qwen/ProcessBench`` or its JSON files) and PRM800K-style files (a rating per step).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from acpo.answers import extract_final_answer, last_boxed
from acpo.prompts import check_messages
from acpo.tasks.base import Problem, format_prompt

READERS = {
    ".jsonl": lambda p: pd.read_json(p, lines=True, dtype=False),
    ".json": lambda p: pd.read_json(p, dtype=False),
    ".csv": lambda p: pd.read_csv(p, dtype=str, keep_default_na=False),
    ".parquet": pd.read_parquet,
}

KNOWN_LAYOUTS = {"gsm8k": ("question", "answer"), "math": ("problem", "solution"),
                 "conversational": ("prompt", "solution"), "conversational_answer": ("prompt", "answer")}


def extract_gold(answer_text: str) -> str | None:
    """The gold final answer in a dataset's answer field, or None when there is none.

    ``#### x`` wins, then the last ``\\boxed{x}``; a field that is already a
    short single-line answer (``72``, ``\\frac{1}{2}``, ``2 \\sqrt{3}``: it has
    a digit, a backslash or ``$``, or no spaces) is used as is. Prose such as
    a worked solution without a final answer gives None.
    """
    text = str(answer_text).strip()
    gold = extract_final_answer(text)
    if gold:
        return gold
    gold = last_boxed(text)
    if gold:
        return gold
    looks_like_answer = any(c.isdigit() or c in "\\$" for c in text) or " " not in text
    if text and "\n" not in text and len(text) <= 64 and looks_like_answer:
        return text
    return None


def _read_table(path: Path) -> pd.DataFrame:
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"cannot read '{path}': unsupported file type {path.suffix!r}; supported: {sorted(READERS)}")
    try:
        return reader(path)
    except Exception as err:  # pandas/pyarrow raise many types for a bad file
        raise ValueError(f"could not read '{path}' as {path.suffix[1:].upper()}: {err}") from err


def _load_hub(name: str, config: str | None, split: str) -> pd.DataFrame:
    import datasets

    try:
        return datasets.load_dataset(name, config, split=split).to_pandas()
    except Exception as err:
        raise ValueError(
            f"'{name}' is not an existing file and could not be loaded with datasets.load_dataset "
            f"(config={config!r}, split={split!r}): {err}"
        ) from err


def _pick_fields(columns: list[str], question_field: str | None, answer_field: str | None, source: str):
    if question_field is None and answer_field is None:
        for question, answer in KNOWN_LAYOUTS.values():
            if question in columns and answer in columns:
                return question, answer
        expected = " or ".join(f"{q}/{a}" for q, a in KNOWN_LAYOUTS.values())
        raise ValueError(
            f"{source} has columns {columns}; expected {expected}, "
            "or pass question_field= and answer_field= to name yours"
        )
    question_field = question_field or next((q for q, a in KNOWN_LAYOUTS.values() if q in columns), "question")
    answer_field = answer_field or next((a for q, a in KNOWN_LAYOUTS.values() if a in columns), "answer")
    missing = [f for f in (question_field, answer_field) if f not in columns]
    if missing:
        raise ValueError(
            f"{source} has no column {', '.join(map(repr, missing))}; available columns: {columns}; "
            f"expected question_field={question_field!r}, answer_field={answer_field!r}"
        )
    return question_field, answer_field


def _prompt_of(cell, field: str, row: int, source: str) -> tuple[str | list[dict[str, str]], str]:
    """(prompt, question) of a dataset cell: a question string, or a list of chat messages."""
    if isinstance(cell, str):
        return (cell, cell) if field == "prompt" else (format_prompt(cell), cell.strip())
    if hasattr(cell, "tolist"):  # parquet gives numpy arrays of dicts
        cell = cell.tolist()
    try:
        messages = check_messages(cell)
    except ValueError as err:
        raise ValueError(f"{source} row {row}, column {field!r}: {err}") from None
    users = [m["content"] for m in messages if m["role"] == "user"]
    return messages, users[-1] if users else ""


def load_problems(
    path_or_name: str | Path,
    *,
    question_field: str | None = None,
    answer_field: str | None = None,
    split: str = "train",
    config: str | None = None,
    limit: int | None = None,
) -> list[Problem]:
    """Problems from a local file or a Hugging Face dataset.

    Args:
        path_or_name: a ``.jsonl``/``.json``/``.csv``/``.parquet`` file, or a
            dataset name for ``datasets.load_dataset`` (used only when no such
            file exists).
        question_field: column with the problem text (default: detected).
        answer_field: column with the answer or worked solution (default: detected).
        split: dataset split (hub datasets only).
        config: dataset configuration, e.g. ``"main"`` for ``openai/gsm8k`` (hub only).
        limit: keep at most this many problems (after skipping bad rows).

    Returns:
        Problems with ``family="dataset"``, ``level=0``, ids ``<source>-<row>``;
        ``solution`` is the answer field when it is already in the step format
        (ends with a ``####`` line, as in GSM8K), else ``""``; ``columns`` holds
        the row's columns but ``prompt`` (what TRL passes reward functions).
    """
    path = Path(path_or_name)
    if path.exists():
        frame, source = _read_table(path), f"'{path}'"
        stem = path.stem
    elif path.suffix.lower() in READERS:
        raise FileNotFoundError(f"no such file: '{path}' (check the path; hub datasets are named without a suffix)")
    else:
        frame, source = _load_hub(str(path_or_name), config, split), f"dataset '{path_or_name}'"
        stem = str(path_or_name).replace("/", "_")
    if frame.empty:
        raise ValueError(f"{source} has no rows")
    q_field, a_field = _pick_fields([str(c) for c in frame.columns], question_field, answer_field, source)

    problems: list[Problem] = []
    skipped = 0
    rows = frame.drop(columns=[c for c in ("prompt", "completion", "completion_ids") if c in frame]).to_dict("records")
    for row, (question, answer_text) in enumerate(zip(frame[q_field], frame[a_field])):
        gold = extract_gold(answer_text) if isinstance(answer_text, str) or pd.notna(answer_text) else None
        if gold is None or (isinstance(question, str) and not question.strip()):
            skipped += 1
            continue
        text = str(answer_text).strip()
        prompt, question_text = _prompt_of(question, q_field, row, source)
        problems.append(
            Problem(
                id=f"{stem}-{row}",
                family="dataset",
                level=0,
                prompt=prompt,
                question=question_text,
                answer=gold,
                solution=text if extract_final_answer(text) is not None else "",
                columns=rows[row],  # what TRL passes reward functions besides prompts and completions
            )
        )
        if limit is not None and len(problems) >= limit:
            break
    if skipped:
        warnings.warn(
            f"{source}: skipped {skipped} row(s) whose gold answer could not be found in column {a_field!r} "
            "(expected a '#### <answer>' line, a \\boxed{} answer, or a short plain answer)",
            stacklevel=2,
        )
    if not problems:
        raise ValueError(f"{source} has no usable rows: every gold answer in column {a_field!r} was unparseable")
    return problems


# --- step-labelled solutions (ProcessBench, PRM800K) -------------------------------------------------------------

PROCESSBENCH_HUB = "Qwen/ProcessBench"
"""ProcessBench on the Hugging Face hub: splits ``gsm8k``, ``math``, ``olympiadbench``, ``omnimath``."""
NO_ERROR = -1
"""The label of a solution whose every step is right (ProcessBench's convention)."""


@dataclass(frozen=True)
class LabelledSolution:
    """A solution already split into steps, with a human label: the index of its earliest wrong step,
    or ``NO_ERROR`` (-1) when every step is right."""

    id: str
    problem: str
    steps: tuple[str, ...]
    label: int
    generator: str = ""
    final_answer_correct: bool | None = None


def step_layout(columns) -> str | None:
    """``processbench`` (``problem, steps, label``), ``prm800k`` (a rating per step: ``steps, ratings``, or
    PRM800K's own nested ``question, label``), or None when the columns hold no step labels."""
    cols = set(map(str, columns))
    if {"problem", "steps", "label"} <= cols:
        return "processbench"
    if {"steps", "ratings"} <= cols or {"question", "label"} <= cols:
        return "prm800k"
    return None


def first_negative(ratings) -> int:
    """PRM800K's label: the index of the first step rated -1, else ``NO_ERROR`` (0 is neutral, not wrong)."""
    return next((k for k, r in enumerate(ratings) if r is not None and int(r) == -1), NO_ERROR)


def _prm800k_row(row: dict) -> tuple[str, list[str], list]:
    """(problem, steps, ratings) of a PRM800K row: flat (``problem``/``question``, ``steps``, ``ratings``), or
    nested as PRM800K ships it (each step's chosen completion, else its first, and that one's rating)."""
    if not isinstance(row.get("label"), dict):
        problem = row["problem"] if isinstance(row.get("problem"), str) else row["question"]
        return str(problem), list(row["steps"]), list(row["ratings"])
    question, label = row["question"], row["label"]
    steps, ratings = [], []
    for step in label["steps"]:
        chosen = step.get("chosen_completion")
        pick = step["completions"][chosen if chosen is not None else 0] if step.get("completions") else step.get(
            "human_completion")
        if pick is None:
            break
        steps.append(pick["text"])
        ratings.append(pick.get("rating"))
    return str(question["problem"] if isinstance(question, dict) else question), steps, ratings


def _as_list(cell) -> list:
    return list(cell.tolist() if hasattr(cell, "tolist") else cell) if cell is not None else []


def step_labelled_rows(frame: pd.DataFrame, source: str, stem: str = "row") -> list[LabelledSolution]:
    """The rows of a step-labelled table (``step_layout``) as :class:`LabelledSolution`; a bad row is an
    error naming it."""
    layout = step_layout(frame.columns)
    if layout is None:
        raise ValueError(f"{source} has columns {[str(c) for c in frame.columns]}; a step-labelled file needs "
                         "problem, steps, label (ProcessBench) or steps, ratings (PRM800K style)")
    out = []
    for i, row in enumerate(frame.to_dict("records")):
        rated = isinstance(row.get("label"), dict) or isinstance(row.get("ratings"), (list, tuple)) \
            or hasattr(row.get("ratings"), "tolist")
        layout = "prm800k" if rated else "processbench"  # a JSONL file may mix PRM800K's nested and flat rows
        try:
            if layout == "processbench":
                problem, steps, label = str(row["problem"]), [str(s) for s in _as_list(row["steps"])], int(row["label"])
            else:
                problem, steps, ratings = _prm800k_row(row)
                steps, ratings = [str(s) for s in _as_list(steps)], _as_list(ratings)
                if len(ratings) != len(steps):
                    raise ValueError(f"{len(steps)} steps but {len(ratings)} ratings")
                label = first_negative(ratings)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source} row {i}: not a {layout} row ({err})") from None
        if not steps:
            raise ValueError(f"{source} row {i}: no steps")
        if not NO_ERROR <= label < len(steps):
            raise ValueError(f"{source} row {i}: label {label} is not a step index (0..{len(steps) - 1}) or -1")
        correct = row.get("final_answer_correct")
        known = lambda v: v is not None and not (isinstance(v, float) and v != v)  # noqa: E731  (NaN: a missing cell)
        out.append(LabelledSolution(str(row["id"]) if known(row.get("id")) else f"{stem}-{i}", problem, tuple(steps),
                                    label, str(row["generator"]) if known(row.get("generator")) else "",
                                    bool(correct) if known(correct) else None))
    return out


def load_step_labelled(path_or_name: str | Path, split: str = "gsm8k", limit: int | None = None,
                       ) -> list[LabelledSolution]:
    """Solutions with human step labels from a local file, or a dataset folder / hub name via
    ``datasets.load_dataset(name, split=split)`` (e.g. ``"Qwen/ProcessBench"``, split ``gsm8k``, ``math``,
    ``olympiadbench`` or ``omnimath``, where the hub is reachable).

    Files: ProcessBench's schema (a JSON list, or JSONL, of ``id, generator, problem, steps,
    final_answer_correct, label``) or PRM800K-style JSONL with a rating per step (-1 wrong, 0 neutral, 1 right;
    the label is the first step rated -1).
    """
    path = Path(path_or_name)
    if path.is_file():
        frame, source, stem = _read_table(path), f"'{path}'", path.stem
    elif path.suffix.lower() in READERS and not path.exists():
        raise FileNotFoundError(f"no such file: '{path}' (check the path; hub datasets are named without a suffix)")
    else:
        frame, source, stem = _load_hub(str(path_or_name), None, split), f"dataset '{path_or_name}'", split
    if frame.empty:
        raise ValueError(f"{source} has no rows")
    rows = step_labelled_rows(frame, source, stem)
    return rows[:limit] if limit is not None else rows
