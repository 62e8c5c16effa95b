"""The Runs tab's callbacks: a run folder's curves, config, checkpoints and saved traces."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from acpo.render import blamed_step, step_heatmap_html
from . import views
from .loaders import InputError, display_path, open_run, read_run_traces
from .shared import ExplorerBase, ui_errors, whole_number


class RunsTab(ExplorerBase):
    """Runs: what ``train.py`` wrote into a run folder."""


    @ui_errors
    def open_run(self, run_path):
        """A run folder's curves, config, checkpoints and saved trace steps."""
        run = open_run(self.guard.resolve(run_path or "", "run folder"), self.guard)
        m = run.metrics
        n_steps = m["step"].nunique() if "step" in m else 0
        facts = [f"**{views.md_escape(run.path.name)}**", f"{n_steps} logged steps", f"{len(run.checkpoints)} checkpoints",
                 f"traces at steps {run.trace_steps}" if run.trace_steps else "no traces saved"]
        for key in ("reward", "eval/pass@1", "entropy", "kl"):
            logged = m[key].dropna() if key in m.columns else []
            if len(logged):
                facts.append(f"last {key} {float(logged.iloc[-1]):.3f}")
        switch = views.stage_switch_step(m)
        if switch is not None:
            facts.append(f"stage 2 from step {switch}")
        hapo = views.hapo_figure(m)
        steps = [str(s) for s in run.trace_steps]
        return (
            " · ".join(facts),
            views.run_figure(m, f"Run {run.path.name}"),
            gr.update(value=hapo, visible=hapo is not None),
            run.config_text or "# no config.yaml",
            gr.update(choices=steps, value=steps[-1] if steps else None),
            [display_path(p) for p in run.checkpoints],
        )

    def _run_traces(self, run_path, step):
        if step in (None, ""):
            raise InputError("this run has no saved traces to browse; pick a step after opening a run")
        run = open_run(self.guard.resolve(run_path or "", "run folder"), self.guard)
        return read_run_traces(run, whole_number(step, "training step", 0, 10**9))

    @ui_errors
    def run_traces(self, run_path, step):
        """The completions of one saved traces file: a summary row each (with hit/miss), and the credit columns."""
        traces = self._run_traces(run_path, step)
        credit_cols = [c for c in traces.columns if c.startswith("credit_")]
        preferred = next((c for c in credit_cols if "method" in traces and c == f"credit_{traces['method'].iloc[0]}"),
                         credit_cols[0] if credit_cols else None)
        summary = views.run_traces_summary(traces, preferred)
        keys = [f"{r.prompt_id} / {r.completion_id}" for r in summary.itertuples()] if "prompt_id" in summary else []
        return (views.display_table(summary), gr.update(choices=credit_cols, value=preferred),
                gr.update(choices=keys, value=keys[0] if keys else None))

    @ui_errors
    def run_trace_view(self, run_path, step, key, credit_column):
        """The heatmap of one saved completion (its rows of the traces file), with its verdict."""
        traces = self._run_traces(run_path, step)
        if not key:
            raise InputError("pick a completion (prompt_id / completion_id)")
        if credit_column not in traces.columns:
            raise InputError(f"the traces have no column {credit_column!r}; pick one of the credit columns")
        prompt_id, _, completion_id = str(key).partition(" / ")
        rows = traces[(traces["prompt_id"].astype(str) == prompt_id)
                      & (traces["completion_id"].astype(str) == completion_id)]
        if rows.empty:
            raise InputError(f"no completion {key!r} in the traces of step {step}")
        err = rows["first_error_step"].iloc[0] if "first_error_step" in rows else -1
        error_step = None if err is None or pd.isna(err) or int(err) < 0 else int(err)
        prompt = rows["prompt"].iloc[0] if "prompt" in rows else None
        rows = rows.sort_values("step")
        said = views.hit_or_miss(blamed_step(rows["step"].tolist(), rows[credit_column].astype(float).tolist()),
                                 error_step, credit_column.removeprefix("credit_"))
        head = (f'<p class="acpo-verdict" style="font: 14px system-ui, sans-serif;">{views.md_escape(said)}</p>'
                if said else "")
        return head + step_heatmap_html(rows, credit_column, prompt, error_step)

