"""The Explore tab's callbacks: pick or type a problem, sample or paste a completion, explain it."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import gradio as gr

import acpo
from acpo.answers import extract_answer
from acpo.credit.info_gain import DEFAULT_PROBE
from acpo.credit.mc_reset import Cancelled
from acpo.data import load_problems
from acpo.render import credit_scale, message_html, trace_html
from acpo.rollout import generate_texts
from acpo.tasks import TASKS, answer_scorer, error_kind, first_error_step
from acpo.tokens import check_fits, context_length, encode_prompt
from acpo.verdict import blamed_step, located, reward_and_source
from . import views
from .loaders import InputError, check_size, sample_label
from .shared import (
    COMPANION_METHOD,
    FREEFORM_CHECKER,
    RESAMPLING,
    UI_METHODS,
    ExplorerBase,
    check_problem,
    checker_choice,
    checker_name,
    parse_reward,
    scale_tops,
    ui_errors,
    whole_number,
)


def verdict_markdown(trace, method: str, check, error_step: int | None, reward_source: str = "given",
                     top: float | None = None) -> str:
    """What the Explore tab says about one explained completion, hit or miss first."""
    col = f"credit_{method}"
    blamed = blamed_step([st.index for st in trace.steps], trace.credits[method].tolist())
    scale = credit_scale(col, trace.credits[method].tolist(), top)
    lines = []
    if error_step is not None and located(check):
        what = error_kind(check)
        lines.append(views.hit_or_miss(blamed, error_step, method, what) + f" (dashed outline: the checker's {what})")
    elif check is not None and check.first_error is None and check.answer_correct:
        lines.append("✓ checker: every step and the answer are right; there is no wrong step to find")
    elif check is not None and check.first_error is None and not getattr(check, "checkable", True):
        lines.append("checker: no line holds a computation it can check, so the wrong answer's first error "
                     "cannot be located")
    elif check is not None and check.first_error is None:
        lines.append("checker: every computation it can check is right, but the answer is wrong: the error is not in "
                     "the arithmetic, so it cannot be located")
    elif check is not None:
        lines.append(f"checker: the steps are right but the answer line is missing (step {error_step} marked); "
                     "no wrong step to localise")
    reward = f"**reward** {trace.reward}" if trace.reward is not None else "**reward** unknown"
    parts = [f"{reward} ({REWARD_SOURCES[reward_source]})", f"**steps** {len(trace.steps)}"]
    if trace.answer is not None:
        parts.append(f"**target answer** <code>{views.md_escape(trace.answer)}</code>")
    parts.append(f"**lowest {col}**: " + (f"step {blamed}" if blamed is not None else "none (several steps share the lowest)"))
    unit = f" {scale.unit}" if scale.unit else ""
    parts.append(f"colour scale ±{scale.top:.3g}{unit}" if scale.signed else f"colour scale 0 … {scale.top:.3g}{unit}")
    if method in trace.seconds:
        parts.append(f"**{method} cost** {trace.seconds[method]:.2f} s")
    lines.append(" · ".join(parts))
    return "  \n".join(lines)


def render_trace(state: dict | None, view: str, scale: str = "own", fixed_scale=1.0) -> str:
    """The heatmap of the explained trace in ``state`` for one of ``VIEWS`` (the core's renderer), its steps on
    its own colour scale or a fixed one (``SCALES``; one trace has nothing to share a scale with)."""
    if not state:
        return message_html("Explain a completion to see its steps here.")
    kind = {"tokens: entropy": "entropy", "tokens: advantage": "advantage"}.get(view, "steps")
    return trace_html(state["trace"], state["method"], kind, state.get("first_error_step"),
                      trace_top(state, scale, fixed_scale))


def trace_top(state: dict, scale: str, fixed_scale) -> float:
    """The magnitude the explained trace's steps draw at full colour under ``scale``."""
    own = credit_scale(f"credit_{state['method']}", state["trace"].credits[state["method"]].tolist()).top
    return scale_tops("own" if scale == "shared" else scale, [own], fixed_scale)[0]


def step_csv(state: dict):
    """The Explore tab's CSV: ``Trace.to_frame()`` (the checkpoint filled in), then the prompt the model was sent,
    the method shown, the label (the checker's first wrong step, -1 where none) and where the reward came from."""
    frame = state["trace"].to_frame()
    error = state["first_error_step"]
    frame["prompt"] = state["sent"]
    frame["method"] = state["method"]
    frame["first_error_step"] = -1 if error is None else int(error)
    frame["reward_source"] = state["reward_source"]
    return frame


REWARD_SOURCES = {"given": "typed in the Reward box", "checker": "the step checker's answer verdict",
                  "answer match": "the final answer against the reference answer",
                  "unknown": "no reward typed, no checker, no reference answer: advantages are 0"}
"""``acpo.verdict.reward_and_source``'s sources, as the verdict line says where the reward came from."""


class ExploreTab(ExplorerBase):
    """Explore a trace: one completion's steps, coloured by a credit method."""

    @ui_errors
    def load_sample(self, label: str):
        """Fill the problem fields from a bundled sample trace."""
        row = next((r for r in self.samples if sample_label(r) == label), None)
        if row is None:
            raise InputError(f"no sample trace called {label!r}")
        checker = checker_choice(row.get("family"), row.get("answer"))
        reward = "" if row.get("reward") is None else str(row["reward"])
        return row["prompt"], row["completion"], str(row.get("answer") or ""), reward, checker

    @ui_errors
    def new_problem(self, family: str, level, seed):
        """A fresh synthetic problem (prompt, answer, checker); the completion is cleared."""
        task = TASKS.get(family)
        if task is None:
            raise InputError(f"unknown task family {family!r}; valid: {', '.join(TASKS)}")
        level = whole_number(level, "level", min(task.levels), max(task.levels))
        problem = task.generate(1, level, whole_number(seed, "seed", 0, 2**31 - 1))[0]
        return problem.prompt, "", problem.answer, "", family

    @ui_errors
    def load_dataset_problem(self, upload, path_text: str, row):
        """Problem ``row`` of a GSM8K/MATH-style file (uploaded, or a path inside the allowed folders)."""
        path = Path(upload) if upload else self.guard.resolve(path_text or "", "dataset file")
        check_size(path, self.max_file_mb)
        try:
            problems = load_problems(path)
        except UnicodeDecodeError as err:
            raise InputError(f"'{path.name}' is not UTF-8 text; save it as UTF-8") from err
        index = whole_number(row or 0, "row", 0, max(0, len(problems) - 1))
        p = problems[index]
        return p.prompt, "", p.answer, "", FREEFORM_CHECKER

    @ui_errors
    def sample(self, model_name, trust_remote_code, prompt, temperature, seed, max_new_tokens, answer="",
               checker=None, as_trained=True):
        """Sample a completion of ``prompt`` from the model (greedy at temperature 0): the completion, an empty
        Reward box (the old reward was another completion's), and the text the model was sent."""
        if not prompt or not prompt.strip():
            raise InputError("the prompt is empty; pick a problem or type one")
        model, tokenizer = self.models.get(model_name, trust_remote_code)
        sent, chat = self.model_prompt(model_name, tokenizer, prompt, answer, checker, as_trained)
        limit = context_length(model)
        n_prompt = len(encode_prompt(tokenizer, sent, chat))
        budget = whole_number(max_new_tokens, "max new tokens", 1, self.limits.sample_tokens)
        if limit is not None:
            if n_prompt >= limit:
                raise InputError(f"the prompt ({n_prompt} tokens) fills the model's context of {limit} tokens")
            budget = min(budget, limit - n_prompt)
        text = generate_texts(model, tokenizer, [sent], temperature=float(temperature), chat_template=chat,
                              seed=whole_number(seed, "seed", 0, 2**31 - 1), max_new_tokens=budget)[0]
        return text, "", sent

    def resampling_options(self, checker, prompt, answer, samples, temperature, batch, tokens, progress=None,
                           stop: threading.Event | None = None) -> dict:
        """``method_options`` for mc_reset from the Explore fields, with a progress bar and a stop flag."""
        opts = {"samples": whole_number(samples, "continuations per boundary (M)", 1, self.limits.mc_samples),
                "batch_size": whole_number(batch, "continuation batch size", 1, self.limits.mc_batch),
                "max_new_tokens": whole_number(tokens, "continuation tokens", 1, self.limits.mc_tokens)}
        try:
            opts["temperature"] = float(temperature)
        except (TypeError, ValueError):
            raise InputError(f"temperature must be a number above 0; got {temperature!r}") from None
        if not 0 < opts["temperature"] <= 5:
            raise InputError(f"the resampling temperature must be above 0 and at most 5; got {temperature!r}")
        score = answer_scorer(checker_name(checker), prompt, answer)
        if score is None and not answer:
            raise InputError("the resampling credit scores continuations: give a reference answer or pick a step "
                             "checker")
        if score is not None:
            opts["score"] = score
        started = time.perf_counter()

        def report(done, total):
            if stop is not None and stop.is_set():
                raise Cancelled("stopped by the user")
            if progress is not None:
                elapsed = time.perf_counter() - started
                left = f", about {elapsed / done * (total - done):.0f} s left" if done else ""
                progress(done / max(total, 1), desc=f"sampling {int(done)}/{total} continuations{left}")
            report.done = done

        report.done = 0
        opts["progress"] = report
        return opts

    def explain_trace(self, model_name, trust_remote_code, prompt, completion, answer, reward, checker, method,
                      segmentation, probe, resampling=None, as_trained=True):
        """The core call behind the Explore tab: (trace state, step table)."""
        if not completion or not completion.strip():
            raise InputError("the completion is empty; paste one or press Sample")
        if method not in UI_METHODS:
            raise InputError(f"unknown credit method {method!r}; valid: {', '.join(UI_METHODS)}")
        model, tokenizer = self.models.get(model_name, trust_remote_code)
        check_fits(model, tokenizer, prompt or "", completion)  # before anything parses the completion
        answer = (answer or "").strip() or None
        check = check_problem(checker, prompt or "", answer, completion)
        reward_value, source = reward_and_source(parse_reward(reward), check, completion, answer)
        methods = [method]
        if method != COMPANION_METHOD and (answer or extract_answer(completion)):
            methods.append(COMPANION_METHOD)
        sent, chat = self.model_prompt(model_name, tokenizer, prompt or "", answer, checker, as_trained)
        options = {method: resampling} if method in RESAMPLING else None
        trace = acpo.explain(model, tokenizer, sent, completion, method=methods, segmentation=segmentation,
                             answer=answer, reward=reward_value, probe=probe or DEFAULT_PROBE, method_options=options,
                             chat_template=chat)
        trace.meta["checkpoint"] = str(model_name or self.default_model)
        state = {"trace": trace, "method": method, "first_error_step": first_error_step(check, trace.steps),
                 "check": check, "reward_source": source, "sent": sent}
        return state, views.step_table(trace.to_frame(), method)

    @ui_errors
    def explain(self, model_name, trust_remote_code, prompt, completion, answer, reward, checker, method,
                segmentation, probe, view, mc_samples=8, mc_temperature=1.0, mc_batch=64, mc_tokens=64,
                as_trained=True, scale="own", fixed_scale=1.0, request: gr.Request = None, progress=gr.Progress()):
        """Explain one completion: heatmap, verdict, entropy trace, step table, CSV of the table, the state,
        and the text the model was sent."""
        resampling, lane = None, contextlib.nullcontext()
        if method in RESAMPLING:
            stop = self._stops.setdefault(getattr(request, "session_hash", None) or "api", threading.Event())
            stop.clear()
            resampling = self.resampling_options(checker, prompt or "", (answer or "").strip(), mc_samples,
                                                 mc_temperature, mc_batch, mc_tokens, progress, stop)
            cost = self.resampling_cost(model_name, trust_remote_code, prompt, completion, segmentation, mc_samples,
                                        mc_batch, mc_tokens, answer, checker, as_trained)
            self.limits.check_seconds(cost["seconds"], f"this resampling credit ({cost['boundaries']} boundaries "
                                      f"× M={cost['m']} continuations of up to {cost['tokens']} tokens)")
            lane = self.limits.resampling_lane()
        try:
            with lane:
                state, table = self.explain_trace(model_name, trust_remote_code, prompt, completion, answer, reward,
                                                  checker, method, segmentation, probe, resampling, as_trained)
        except Cancelled:  # Stop: the sampling ended within one generated token; nothing half-done is shown
            done = int(resampling["progress"].done)
            said = f"Stopped: the resampling credit was cancelled after {done} continuations; nothing is shown."
            return (message_html(said), said, None, None, None, None, gr.update(), gr.update(visible=False))
        trace = state["trace"]
        fig = views.entropy_figure(trace.entropies.tolist(), trace.tokens, trace.to_frame(), f"credit_{method}")
        verdict = verdict_markdown(trace, method, state["check"], state["first_error_step"], state["reward_source"],
                                   trace_top(state, scale, fixed_scale))
        csv = self.downloads.write(step_csv(state), f"acpo-steps-{method}-{segmentation}")
        curve = views.resample_figure(trace.to_frame(), trace.reward) if method in RESAMPLING else None
        return (render_trace(state, view, scale, fixed_scale), verdict, fig, views.display_table(views.hide_columns(table)),
                csv, state, state["sent"], gr.update(value=curve, visible=curve is not None))

    def stop(self, request: gr.Request = None):
        """Stop this session's running resampling credit: its sampling ends within one generated token."""
        stop = self._stops.get(getattr(request, "session_hash", None) or "api")
        if stop is not None:
            stop.set()

    @ui_errors
    def estimate_resampling(self, model_name, trust_remote_code, prompt, completion, segmentation, method,
                            mc_samples, mc_batch, mc_tokens, answer="", checker=None, as_trained=True):
        """Before mc_reset runs: how many continuations it will sample and about how long it will take."""
        if method not in RESAMPLING:
            return ""
        if not completion or not completion.strip():
            return "Resampling credit: paste or sample a completion to see its cost."
        c = self.resampling_cost(model_name, trust_remote_code, prompt, completion, segmentation, mc_samples,
                                 mc_batch, mc_tokens, answer, checker, as_trained)
        seconds = c["seconds"]
        shown = f"{seconds:.2g}" if seconds < 10 else f"{seconds:.0f}"  # two significant digits, never "0.0"
        over = (f" This server allows {self.limits.seconds:.0f} s per request: lower M or the tokens."
                if seconds > self.limits.seconds else " Stop cancels it.")
        return (f"**Resampling credit (mc_reset)** will sample {c['boundaries']} boundaries × M={c['m']} = "
                f"{c['total']} continuations of up to {c['tokens']} tokens in {c['calls']} batch(es): about "
                f"**{shown} s** on this machine (continuations assumed as long as the rest of this completion; "
                f"the progress bar refines it).{over}")

    def resampling_cost(self, model_name, trust_remote_code, prompt, completion, segmentation, mc_samples, mc_batch,
                        mc_tokens, answer="", checker=None, as_trained=True) -> dict:
        """How many continuations mc_reset would sample, in how many batches, and about how many seconds
        (the explain of the other methods included)."""
        m = whole_number(mc_samples, "continuations per boundary (M)", 1, self.limits.mc_samples)
        batch = whole_number(mc_batch, "continuation batch size", 1, self.limits.mc_batch)
        tokens = whole_number(mc_tokens, "continuation tokens", 1, self.limits.mc_tokens)
        model, tokenizer = self.models.get(model_name, trust_remote_code)
        check_fits(model, tokenizer, prompt or "", completion)
        sent, chat = self.model_prompt(model_name, tokenizer, prompt or "", answer, checker, as_trained)
        answer = (answer or "").strip() or None
        started = time.perf_counter()  # what the run does besides sampling: the explain of the other methods
        trace = acpo.explain(model, tokenizer, sent, completion, method=COMPANION_METHOD if answer else "uniform",
                             segmentation=segmentation, answer=answer, reward=0.0, chat_template=chat)
        explained = time.perf_counter() - started
        seconds, calls = self.resampling_seconds(model, tokenizer, sent, trace, m, batch, tokens)
        return dict(boundaries=len(trace.steps), m=m, total=len(trace.steps) * m, tokens=tokens, calls=calls,
                    seconds=seconds + explained)

    def resampling_seconds(self, model, tokenizer, sent: str, trace, m: int, batch: int, tokens: int):
        """(estimated seconds, generate calls) of mc_reset on ``trace``: each call of ``batch // m`` boundaries
        runs until its longest continuation ends, taken as the rest of the completion after the boundary (plus
        its end token), at most ``tokens``; a token step at that width is timed once per model and width."""
        starts = [0] + [s.token_end for s in trace.steps[:-1]]
        remaining = [min(tokens, len(trace.tokens) - start + 1) for start in starts]
        per_call = max(1, batch // m)
        chunks = [remaining[a : a + per_call] for a in range(0, len(remaining), per_call)]
        prefix = encode_prompt(tokenizer, sent) + trace.token_ids[: len(trace.token_ids) // 2]  # a middle boundary
        seconds = sum(max(c) * self._step_seconds(model, tokenizer, prefix, len(c) * m) for c in chunks)
        return seconds, len(chunks)

    def _step_seconds(self, model, tokenizer, prefix: list[int], width: int) -> float:
        """Seconds per generated token for ``width`` continuations of ``prefix`` at once, timed once per model
        and width."""
        key = (id(model), width)
        if key not in self._rates:
            from acpo.rollout import HFEngine

            engine = HFEngine(model, tokenizer, 16, 1.0, width)
            steps = []
            started = time.perf_counter()
            engine.generate([prefix], n=width, on_token=lambda _, n: steps.append(n))
            self._rates[key] = (time.perf_counter() - started) / max(1, len(steps))  # all may end before 16
        return self._rates[key]

    @ui_errors
    def render_view(self, state, view, scale="own", fixed_scale=1.0):
        return render_trace(state, view, scale, fixed_scale)

