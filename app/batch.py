"""The Batch tab's callbacks: explain every completion of a rollout file, and say which credit found the
first wrong step on those traces."""

from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import pandas as pd

import acpo
from acpo.credit.info_gain import DEFAULT_PROBE
from acpo.fidelity import fidelity_table
from acpo.render import message_html, trace_html
from acpo.recommend import recommend
from acpo.tasks import error_kind, first_error_step
from acpo.tokens import check_fits
from acpo.verdict import blamed_step, check_row, localisable, located, reward_and_source, unlabelled_counts
from . import views
from .loaders import InputError, read_rollouts
from .shared import (
    AUTO_CHECKER,
    BATCH_METHODS,
    ExplorerBase,
    checker_name,
    scale_tops,
    ui_errors,
    whole_number,
)

MAX_BATCH_ROWS = 2000
BATCH_CHUNK = 16
FIDELITY_BOOTSTRAP = 1000


def credit_table(rollouts: pd.DataFrame, traces, errors, methods) -> pd.DataFrame:
    """The whole credit table of a file: each completion's steps (``Trace.to_frame``, in its column order), then
    the file's row, the prompt, the label (the first wrong step a checker located, -1 where none) and the methods explained."""
    frames = []
    for (r, trace, error) in zip(rollouts.itertuples(), traces, errors):
        frame = trace.to_frame()
        frame["row"] = r.Index
        frame["prompt"] = r.prompt
        frame["first_error_step"] = -1 if error is None else int(error)
        frame["methods"] = ",".join(methods)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


class BatchTab(ExplorerBase):
    """Batch and export: a whole rollout file through the credit methods."""


    @staticmethod
    def _batch_rewards(rollouts: pd.DataFrame, checks: list) -> tuple[list[float | None], list[bool]]:
        """Each row's reward (``acpo.verdict.reward_and_source``): the file's, else the checker's answer verdict,
        else the answer match; and whether each was computed rather than read."""
        out, computed = [], []
        for r, check in zip(rollouts.itertuples(), checks):
            reward, source = reward_and_source(r.reward, check, r.completion, r.answer)
            out.append(reward)
            computed.append(source in ("checker", "answer match"))
        return out, computed

    @staticmethod
    def _batch_checks(rollouts: pd.DataFrame, checker: str) -> list:
        """The step checker's verdict per row that has an answer (``acpo.verdict.check_row``): the chosen checker,
        or with ``AUTO_CHECKER`` the task of the file's ``family`` column, else the free-form checker."""
        if checker != AUTO_CHECKER:
            checker_name(checker)  # an unknown checker is refused in one line, before any row is read
        return [check_row(checker, r.prompt, str(r.answer), r.completion, r.family)[0] if r.answer is not None
                else None for r in rollouts.itertuples()]

    @ui_errors
    def batch(self, upload, path_text, model_name, trust_remote_code, methods, segmentation, probe, max_rows,
              checker=AUTO_CHECKER, progress=gr.Progress()):
        """Explain every completion of a rollout file: credit distribution, the credit table, and where a step
        checker labels the rows, which credit found the first wrong step (per method and per completion).

        A row the model cannot score (longer than its context, a special token in the completion) is skipped
        and named in the summary; the rest of the file is explained."""
        if upload:
            path, name = Path(upload), Path(upload).name
        else:
            path = self.guard.resolve(path_text or "", "rollout file")
            name = path.name
        methods = [m for m in (methods or []) if m]
        if not methods:
            raise InputError("pick at least one credit method")
        unknown = [m for m in methods if m not in BATCH_METHODS]
        if unknown:
            raise InputError(f"Batch scores {', '.join(BATCH_METHODS)}; not {', '.join(unknown)} (the resampling "
                             "credit samples continuations per step: use it on one trace in Explore)")
        limit = whole_number(max_rows, "Max rows", 1, MAX_BATCH_ROWS)
        rollouts, layout = read_rollouts(path, name, self.max_file_mb)
        dropped = max(0, len(rollouts) - limit)
        rollouts = rollouts.iloc[:limit].reset_index(drop=True)
        model, tokenizer = self.models.get(model_name, trust_remote_code)
        skipped_rows: dict[int, str] = {}
        for i, r in enumerate(rollouts.itertuples()):  # before any checker parses a row
            try:
                check_fits(model, tokenizer, r.prompt, r.completion)
            except ValueError as err:
                skipped_rows[i] = str(err)
        fit = [i for i in range(len(rollouts)) if i not in skipped_rows]
        human = "label" in rollouts.columns  # the file's own first-error label is the ground truth
        checked = iter([None] * len(fit) if human else self._batch_checks(rollouts.iloc[fit], checker or AUTO_CHECKER))
        checks = [None if i in skipped_rows else next(checked) for i in range(len(rollouts))]
        read = dict(zip(fit, zip(*self._batch_rewards(rollouts.iloc[fit], [checks[i] for i in fit]))))
        rewards = [read.get(i, (None, False))[0] for i in range(len(rollouts))]
        computed = [read.get(i, (None, False))[1] for i in range(len(rollouts))]
        answers = [a if isinstance(a, str) else None for a in rollouts["answer"]] if rollouts["answer"].notna().any() \
            else None
        traces, total = [], len(rollouts)
        checkpoint = str(model_name or self.default_model)
        progress(0, desc=f"explaining {total} completions")
        started = time.perf_counter()
        for start in range(0, total, BATCH_CHUNK):
            rows = [i for i in range(start, min(total, start + BATCH_CHUNK)) if i not in skipped_rows]
            # rows with and without a known reward are explained apart: explain_batch takes all rewards or none
            for part in ([i for i in rows if rewards[i] is not None], [i for i in rows if rewards[i] is None]):
                if not part:
                    continue
                known = rewards[part[0]] is not None

                def explain(rows_: list[int]):
                    chunk = rollouts.iloc[rows_]
                    meta = [{"prompt_id": r.prompt_id, "completion_id": r.completion_id, "checkpoint": checkpoint}
                            for r in chunk.itertuples()]
                    return acpo.explain_batch(
                        model, tokenizer, chunk["prompt"].tolist(),
                        chunk["steps" if "steps" in chunk else "completion"].tolist(), method=methods,
                        segmentation=segmentation, answers=None if answers is None else [answers[i] for i in rows_],
                        rewards=[rewards[i] for i in rows_] if known else None,
                        probe=probe or DEFAULT_PROBE, meta=meta,
                    )

                try:
                    traces += list(zip(part, explain(part)))
                except ValueError:  # one row the model cannot score: explain the chunk's rows one by one
                    for i in part:
                        try:
                            traces += list(zip([i], explain([i])))
                        except ValueError as err:
                            skipped_rows[i] = str(err)
            done = min(total, start + BATCH_CHUNK)
            if start == 0 and done < total:  # the first chunk's pace: refuse now what would overrun the cap
                per_row = (time.perf_counter() - started) / done
                self.limits.check_seconds(per_row * total, f"explaining {total} rows ({per_row:.2f} s per row)",
                                          fix=f"lower Max rows to about {max(1, int(self.limits.seconds / per_row))}")
            progress(done / total, desc=f"explained {done}/{total}")
        if not traces:
            first = next(iter(sorted(skipped_rows.items())))
            raise InputError(f"no row of '{name}' could be explained; row {first[0]}: {first[1]}")
        kept = [i for i, _ in sorted(traces, key=lambda pair: pair[0])]
        traces = [t for _, t in sorted(traces, key=lambda pair: pair[0])]
        if skipped_rows:
            rollouts = rollouts.iloc[kept]  # the original row numbers stay in the index
            checks, rewards, computed = ([x[i] for i in kept] for x in (checks, rewards, computed))
            total = len(kept)
        if human:
            # a label past the trace's last step (another segmentation's index) labels nothing here
            errors = [int(label) if 0 <= label < len(t.steps) else None for label, t in zip(rollouts["label"], traces)]
            labelled = [i for i, e in enumerate(errors) if e is not None]
        else:
            errors = [first_error_step(c, t.steps) if located(c) else None
                      for c, t in zip(checks, traces)]
            labelled = [i for i, (c, e) in enumerate(zip(checks, errors)) if e is not None and localisable(c)]
        full = credit_table(rollouts, traces, errors, methods)
        col = f"credit_{methods[0]}"
        note = f" (first {limit} of {limit + dropped} rows)" if dropped else ""
        summary = (f"**{total} completions**{note} · {len(full)} steps · layout `{layout}` · "
                   f"mean {col} {full[col].mean():+.4f} (std {full[col].std():.4f})")
        if any(computed):
            summary += f"  \n{sum(computed)} rewards computed from the answer (the file gives none for those rows)"
        unknown_rewards = sum(r is None for r in rewards)
        if unknown_rewards:
            summary += (f"  \n{unknown_rewards} rows have no reward and no answer: their token advantages and HAPO "
                        "credits are 0")
        if skipped_rows:
            shown = "; ".join(f"row {i}: {views.md_escape(why)}" for i, why in sorted(skipped_rows.items())[:3])
            summary += (f"  \n**{len(skipped_rows)} row(s) skipped** (the model cannot score them): {shown}"
                        + (" …" if len(skipped_rows) > 3 else ""))
        rows_table = views.batch_rows(rollouts, traces, errors, methods)
        fidelity = self.batch_fidelity(traces, errors, labelled, methods)
        if fidelity is not None:
            hits = sum(views.hit_mark(blamed_step([s.index for s in traces[i].steps],
                                                  traces[i].credits[methods[0]].tolist()), errors[i]) == "✓"
                       for i in labelled)
            who = "a human-labelled" if human else "a checker-located"
            summary += (f"  \n**{len(labelled)} failed completions have {who} first wrong step**: "
                        f"{methods[0]} found it in {hits}/{len(labelled)}.  \n"
                        + recommend(methods, self.fidelity, self.processbench, own=fidelity,
                                    own_labels="the file's human labels" if human else "the step checker's").text)
        else:
            summary += ("  \nNo row can be labelled by a step checker (it needs an `answer`, and a failed "
                        "completion whose first wrong line the checker locates): no fidelity table.  \n"
                        + recommend(methods, self.fidelity, self.processbench).text)
        skipped = {"labelled correct (-1)": len(rollouts) - len(labelled)} if human else unlabelled_counts(checks)
        if any(skipped.values()):
            summary += "  \nNot labelled: " + ", ".join(f"{n} {why}" for why, n in skipped.items())
        whats = ["first wrong step (human label)" if human else error_kind(c) for c in checks]
        state = {"traces": traces, "errors": errors, "method": methods[0], "methods": methods, "what": whats,
                 "tops": {m: float(full[f"credit_{m}"].abs().max()) for m in methods}}
        stem = Path(name).stem
        return (summary, views.credit_histogram(full, col), views.display_table(views.hide_columns(full.head(200))),
                self.downloads.write(full, f"acpo-credit-table-{stem}"),
                views.display_table(fidelity) if fidelity is not None else None,
                views.display_table(rows_table), state,
                message_html("Click a completion row to see its heatmap."),
                self.downloads.write(rows_table, f"acpo-per-completion-{stem}"),
                self.downloads.write(fidelity, f"acpo-fidelity-{stem}") if fidelity is not None else None)

    @staticmethod
    def batch_fidelity(traces, errors, labelled, methods) -> pd.DataFrame | None:
        """``acpo.fidelity.fidelity_table`` on the labelled completions (the bench's metrics), or None."""
        if not labelled:
            return None
        scores = {m: [traces[i].credits[m].numpy() for i in labelled] for m in methods}
        return fidelity_table(scores, [errors[i] for i in labelled], FIDELITY_BOOTSTRAP)

    @ui_errors
    def batch_trace(self, state, scale="shared", fixed_scale=1.0, evt: gr.SelectData = None):
        """The heatmaps of the completion whose row was clicked in the per-completion table, one per method."""
        if not state or evt is None:
            raise InputError("explain a file first, then click one of its completion rows")
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return self.batch_trace_at(state, row, scale, fixed_scale)

    def batch_trace_at(self, state, row, scale="shared", fixed_scale=1.0) -> str:
        """One heatmap per explained method of completion ``row``, each with its verdict, on the colour scale
        ``scale`` (shared: the method's largest over the whole file; own; fixed)."""
        traces = state["traces"]
        row = whole_number(row, "row", 0, len(traces) - 1)
        trace, error = traces[row], state["errors"][row]
        what = state["what"][row] if state.get("what") else "first wrong step"
        parts = []
        for method in state.get("methods", [state["method"]]):
            own = float(trace.credits[method].abs().max())
            shared = state.get("tops", {}).get(method, own)
            top = {"shared": shared, "own": own}.get(scale) or scale_tops(scale, [own], fixed_scale)[0]
            blamed = blamed_step([s.index for s in trace.steps], trace.credits[method].tolist())
            said = views.hit_or_miss(blamed, error, method, what) or f"{method}: lowest credit at step {blamed}"
            parts.append(f'<div class="acpo-batch-method" data-method="{method}">'
                         f'<p class="acpo-verdict">{views.md_escape(said)}</p>'
                         f'{trace_html(trace, method, "steps", error, top)}</div>')
        return "".join(parts)


