"""The Compare tab's callbacks: one completion scored under several checkpoints, on one colour scale."""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd

import acpo
from acpo.credit.info_gain import DEFAULT_PROBE
from acpo.render import ColourScale, credit_scale, step_heatmap_html
from acpo.tasks import error_kind, first_error_step
from acpo.tokens import check_fits
from acpo.verdict import blamed_step, located, row_reward
from . import views
from .loaders import InputError
from .shared import (
    BATCH_METHODS,
    COMPARE_SEGMENTATIONS,
    NO_CHECKER,
    ExplorerBase,
    check_problem,
    scale_tops,
    ui_errors,
)


class CompareTab(ExplorerBase):
    """Compare checkpoints: the same completion's credit under each, and the difference."""


    @ui_errors
    def compare(self, model_names, trust_remote_code, prompt, completion, answer, method, segmentation, probe,
                checker=NO_CHECKER, as_trained=True, scale="shared", fixed_scale=1.0):
        """The same completion scored under each checkpoint: heatmaps on one colour scale (``scale``: shared,
        own or fixed) with the checker's outline, a difference heatmap with its own scale and labels, a per-step
        chart, the table and its CSV. Models whose tokenizers split the completion differently get a warning."""
        names = [n for n in (model_names or []) if n and n.strip()]
        if len(names) < 2:
            raise InputError("pick at least two checkpoints to compare")
        if segmentation not in COMPARE_SEGMENTATIONS:
            raise InputError(
                f"segmentation {segmentation!r} depends on each model's entropy, so steps would differ between "
                f"checkpoints; use one of {', '.join(COMPARE_SEGMENTATIONS)}"
            )
        if method not in BATCH_METHODS:
            raise InputError(f"Compare scores cheap credit methods: one of {', '.join(BATCH_METHODS)}")
        if not completion or not completion.strip():
            raise InputError("the completion is empty; paste one (or copy it from the Explore tab)")
        if len(names) > self.limits.compare_models:
            raise InputError(f"{len(names)} checkpoints picked; this server compares at most "
                             f"{self.limits.compare_models} at once")
        model, tokenizer = self.models.get(names[0], trust_remote_code)
        check_fits(model, tokenizer, prompt or "", completion)  # before anything parses the completion
        answer = (answer or "").strip() or None
        check = check_problem(checker, prompt or "", answer, completion)
        reward = row_reward(None, check, completion, answer)
        frames, traces = {}, {}
        for name in names:
            label = name if name not in frames else f"{name} ({len(frames)})"
            model, tokenizer = self.models.get(name, trust_remote_code)
            sent, chat = self.model_prompt(name, tokenizer, prompt or "", answer, checker, as_trained)
            trace = acpo.explain(model, tokenizer, sent, completion, method=method, segmentation=segmentation,
                                 answer=answer, reward=reward, probe=probe or DEFAULT_PROBE, chat_template=chat)
            trace.meta["checkpoint"] = name
            traces[label], frames[label] = trace, trace.to_frame()
        col = f"credit_{method}"
        tops = scale_tops(scale, [credit_scale(col, f[col].tolist()).top for f in frames.values()], fixed_scale)
        error_step = first_error_step(check, next(iter(traces.values())).steps)
        cells = []
        for (label, f), top in zip(frames.items(), tops):
            blamed = blamed_step(f["step"].tolist(), f[col].tolist())
            said = views.hit_or_miss(blamed, error_step, method, error_kind(check)) \
                if located(check) \
                else f"lowest credit at step {blamed}"
            cells.append(f"<div>{step_heatmap_html(f, col, None, error_step, title=f'{label}: {said}', top=top)}</div>")
        labels = list(frames)
        first, last = frames[labels[0]], frames[labels[-1]]
        diff = first[["step", "text"]].copy()
        delta = f"Δ {col}"  # a difference is signed even where the credit is one-sided: the diverging map
        diff[delta] = last[col].to_numpy() - first[col].to_numpy()
        unit = credit_scale(col, []).unit
        diff_scale = ColourScale(True, float(diff[delta].abs().max()), unit, delta,
                                 f"{method} under {labels[-1]} minus under {labels[0]}: blue where the step's number "
                                 "is higher under the last checkpoint, red where it is lower (not credit or blame)",
                                 ends=("lower under the last", "higher under the last"))
        diff_html = step_heatmap_html(diff, delta, None, error_step, title=f"difference: {labels[-1]} − {labels[0]}",
                                      scale=diff_scale)
        grid = (f'<div class="acpo-compare-grid" style="display:grid; grid-template-columns: '
                f'repeat(auto-fit, minmax(min(100%, 300px), 1fr)); gap:12px;">{"".join(cells)}</div>'
                f'<div style="margin-top:12px;">{diff_html}</div>')
        scale_note = {"shared": f"The checkpoints' panels share one colour scale ({tops[0]:.3g} {unit} at full colour)",
                      "own": "Each panel has its own colour scale (its largest magnitude at full colour): compare "
                             "the numbers, not the shades",
                      "fixed": f"Every panel is drawn on a fixed scale ({tops[0]:.3g} {unit} at full colour)"}
        note = scale_note.get(scale or "shared", "") + "; the difference has its own."
        split = {label: len(t.tokens) for label, t in traces.items()}
        if len({tuple(t.tokens) for t in traces.values()}) > 1:
            warning = ("These models' tokenizers split the completion differently (" +
                       ", ".join(f"{label}: {n} tokens" for label, n in split.items()) +
                       "): step credits are comparable step by step, but a shared scale mixes different "
                       "tokenisations, and token-level numbers are not comparable.")
            gr.Warning(warning)
            note += f' <strong class="acpo-tokenizer-warning">⚠ {html.escape(warning)}</strong>'
        grid = (f'<div class="acpo-compare" data-shared-scale="{tops[0]:.6g}" data-scale-mode="{scale or "shared"}">'
                f'<p class="acpo-note" style="font: 12px system-ui, sans-serif;">{note}</p>{grid}</div>')
        full = pd.concat(frames.values(), ignore_index=True)
        return (grid, views.compare_figure(frames, col), views.display_table(views.compare_table(frames, col)),
                self.downloads.write(full, f"acpo-compare-{method}"))

