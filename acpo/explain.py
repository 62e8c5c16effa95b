"""The public API: ``explain`` one completion or ``explain_batch`` many -> ``Trace`` objects.

    trace = acpo.explain(model, tokenizer, prompt, completion, method="info_gain", answer="42")
    trace.to_frame()          # one row per step
    trace.to_csv("steps.csv")

``explain_batch`` tokenizes and checks its inputs, then calls ``acpo.pipeline.assign_credit``,
the function the trainer, the TRL plug-in and the verl reward manager call too, so what the
app shows is exactly what training would use.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from tqdm.auto import tqdm

from acpo.advantage import AdvantageConfig
from acpo.credit import credit_name
from acpo.credit.info_gain import DEFAULT_PROBE
from acpo.pipeline import assign_credit, default_group_ids, make_credit
from acpo.prompts import Prompt, render_prompt
from acpo.segment import GIVEN, STEP_SEPARATOR, SegmentConfig, join_steps, owned_char_starts, resolve_segmentation
from acpo.tokens import check_context, encode_prompt, encode_with_offsets, pad_batch, require_pad_token
from acpo.trace import Trace


def given_completions(
    completions: Sequence[str | Sequence[str]], segmentation: str, step_starts: Sequence[Sequence[int]] | None,
    separator: str = STEP_SEPARATOR,
) -> tuple[list[str], str, list[list[int]] | None]:
    """(texts, segmentation, step starts): a completion given as a list of step strings is their join with
    ``separator`` and its steps are exactly those (segmentation ``"given"``); with ``segmentation="given"``
    string completions need ``step_starts``, the character where each step starts."""
    split = [not isinstance(c, str) for c in completions]
    if any(split):
        if not all(split) or step_starts is not None:
            raise ValueError("give every completion as a list of step strings, or every one as a string (with "
                             "step_starts for segmentation='given'); not a mix")
        joined = []
        for i, c in enumerate(completions):
            try:
                joined.append(join_steps(c, separator))
            except ValueError as err:
                raise ValueError(f"completion {i}: {err}") from None
        return [t for t, _ in joined], GIVEN, [s for _, s in joined]
    if segmentation == GIVEN:
        if step_starts is None or len(step_starts) != len(completions):
            raise ValueError("segmentation='given' needs step_starts: the character start of every step of each "
                             "completion (or pass each completion as a list of step strings)")
        return list(completions), GIVEN, [list(s) for s in step_starts]
    if step_starts is not None:
        raise ValueError(f"step_starts are read only with segmentation='given', not {segmentation!r}")
    return list(completions), segmentation, None


def check_batch_inputs(prompts, completions, answers, rewards, group_ids, meta, batch_size) -> None:
    """One line naming the argument when a per-completion list is not one per completion, a row is not text,
    or ``batch_size`` is not a positive whole number."""
    if isinstance(completions, str) or isinstance(prompts, str):
        raise ValueError("prompts and completions are lists (one entry per completion); wrap a single one in [...]")
    for name, column in [("answers", answers), ("rewards", rewards), ("group_ids", group_ids), ("meta", meta)]:
        if column is not None and len(column) != len(completions):
            raise ValueError(f"got {len(column)} {name} for {len(completions)} completions; pass one per completion "
                             "(None where unknown), or leave it out")
    for i, c in enumerate(completions):
        if not isinstance(c, str) and not (isinstance(c, (list, tuple)) and all(isinstance(s, str) for s in c)):
            raise ValueError(f"completion {i} is {type(c).__name__} {c!r:.40}; a completion is the assistant's text "
                             "(or its steps, a list of strings)")
    for i, p in enumerate(prompts):
        if not isinstance(p, str) and not (isinstance(p, list) and all(isinstance(m, dict) for m in p)):
            raise ValueError(f"prompt {i} is {type(p).__name__} {p!r:.40}; a prompt is text or a list of chat "
                             "messages")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of at least 1; got {batch_size!r}")


def explain_batch(
    model,
    tokenizer,
    prompts: Sequence[Prompt],
    completions: Sequence[str | Sequence[str]],
    method: str | Sequence[str] = "info_gain",
    segmentation: str = "hybrid",
    answers: Sequence[str | None] | None = None,
    rewards: Sequence[float] | None = None,
    group_ids: Sequence[int] | None = None,
    probe: str = DEFAULT_PROBE,
    segment_config: SegmentConfig | None = None,
    advantage_config: AdvantageConfig | None = None,
    batch_size: int = 8,
    meta: Sequence[dict] | None = None,
    progress: bool = False,
    method_options: Mapping[str, dict] | None = None,
    chat_template: bool = True,
    step_starts: Sequence[Sequence[int]] | None = None,
    step_separator: str = STEP_SEPARATOR,
) -> list[Trace]:
    """Explain many completions with batched forwards.

    Args:
        model, tokenizer: any Hugging Face causal LM and its tokenizer (with a pad token).
        prompts, completions: parallel lists; a prompt is a string or a list of chat messages, rendered
            with the tokenizer's chat template when it has one (``acpo.prompts.render_prompt``; the
            trace keeps the rendered text). A completion is the assistant's text only, or a list of step
            strings already split (e.g. ProcessBench's ``steps``): then the text is their join with
            ``step_separator`` (a newline), the trace's steps are exactly those (each step's text carries the
            separator after it), and tokens are scored on the joined text.
        method: a credit method name or a list of them (see ``acpo.credit.CREDIT_METHODS``).
        segmentation: ``lines``, ``markers``, ``entropy``, ``hybrid``, ``fixed`` / ``fixed-N``, or ``given``
            with ``step_starts`` (the character where each step of each completion starts).
        answers: reference answers (the information gain's target; what ``mc_reset`` scores continuations
            against); None entries fall back as in ``acpo.pipeline.resolve_answers``.
        rewards: outcome rewards; give them to see token advantages and HAPO credits.
        group_ids: which completions answer the same prompt (default: same prompt text).
        probe: the text the information gain puts before the answer (``"#### "`` for the synthetic tasks).
        batch_size: completions per forward.
        meta: per-completion labels (run, checkpoint, prompt_id, completion_id) for the table.
        method_options: constructor options per method, e.g. ``{"mc_reset": {"samples": 16}}``;
            ``mc_reset`` scores its continuations against ``answers`` unless given a ``score``.
        chat_template: False sends string prompts as plain text even to a tokenizer with a template.
    """
    given = [method] if isinstance(method, str) else list(method)
    if not given:
        raise ValueError("method is an empty list; name at least one credit method, e.g. method='info_gain'")
    check_batch_inputs(prompts, completions, answers, rewards, group_ids, meta, batch_size)
    methods = list(dict.fromkeys(credit_name(m) for m in given))  # old aliases -> their credit's name
    options = {credit_name(m): dict(o) for m, o in (method_options or {}).items()}
    credit_methods = {m: make_credit(m, options.get(m), probe=probe) for m in methods}
    completions, segmentation, step_starts = given_completions(completions, segmentation, step_starts,
                                                               step_separator)
    if segmentation != GIVEN:
        resolve_segmentation(segmentation)
    if len(prompts) != len(completions):
        raise ValueError(f"got {len(prompts)} prompts but {len(completions)} completions; pass one prompt per completion")
    if not completions:
        raise ValueError("no completions to explain")
    pad_id = require_pad_token(tokenizer)
    prompts = [render_prompt(tokenizer, p, chat_template) for p in prompts]
    prompt_tok, comp_tok, offsets = [], [], []
    for i, (p, c) in enumerate(zip(prompts, completions)):
        if not c or not c.strip():
            raise ValueError(f"completion {i} is empty; there is nothing to explain")
        check_no_special_tokens(tokenizer, c, i)
        ids, offs = encode_with_offsets(tokenizer, c)
        if not ids:
            raise ValueError(f"completion {i} ({c[:40]!r}) tokenizes to no tokens")
        pids = encode_prompt(tokenizer, p, chat_template)
        check_context(model, len(pids), len(ids))
        prompt_tok.append(pids)
        comp_tok.append(ids)
        offsets.append(offs)
    tensors = pad_batch(prompt_tok, comp_tok, pad_id)
    groups = default_group_ids(prompts) if group_ids is None else torch.as_tensor(list(group_ids), dtype=torch.long)
    reward_t = None if rewards is None else torch.tensor([float(r) for r in rewards])
    acfg = advantage_config or AdvantageConfig()

    bar = tqdm(total=len(methods) + 1, desc="explain", disable=not progress)
    credited = assign_credit(
        model, tokenizer, *tensors, completions, offsets, credit_methods, group_ids=groups, rewards=reward_t,
        outcome=acfg.outcome, answers=answers, segmentation=segmentation, segment_config=segment_config,
        advantage_config=acfg, batch_size=batch_size, score_tokens=True, progress=bar.update, step_starts=step_starts,
    )
    bar.close()
    batch = credited.batch
    extras = {k: v for result in credited.results.values() for k, v in result.extras.items()}

    traces = []
    for i, text in enumerate(completions):
        n = len(comp_tok[i])
        starts = owned_char_starts(offsets[i], len(text))
        traces.append(
            Trace(
                prompt=prompts[i],
                completion=text,
                token_ids=comp_tok[i],
                tokens=[text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])],
                offsets=offsets[i],
                logprobs=batch.logprobs[i, :n].clone(),
                entropies=batch.entropy[i, :n].clone(),
                steps=batch.steps[i],
                segmentation=segmentation,
                credits={m: credited.results[m].step_credits[i] for m in methods},
                token_advantages={m: credited.token_advantages[m][i, :n] for m in methods},
                extras={k: v[i] for k, v in extras.items()},
                answer=batch.answers[i] if batch.answers else (answers[i] if answers else None),
                reward=None if reward_t is None else float(reward_t[i]),
                meta=dict(meta[i]) if meta is not None else {},
                seconds=dict(credited.seconds),
            )
        )
    return traces


def check_no_special_tokens(tokenizer, completion: str, index: int = 0) -> None:
    """Refuse a completion that holds a special token such as the template's end of turn (``<|im_end|>``).

    The completion must be the assistant's text alone: a special token inside
    it would be scored as if the model had written it mid-answer.
    """
    for token in sorted(set(getattr(tokenizer, "all_special_tokens", []) or []), key=len, reverse=True):
        if len(token) > 1 and (at := completion.find(token)) >= 0:
            raise ValueError(f"completion {index} contains the special token {token!r} at character {at}; pass the "
                             f"assistant's text only (cut the completion before {token!r})")


def explain(
    model,
    tokenizer,
    prompt: Prompt,
    completion: str,
    method: str | Sequence[str] = "info_gain",
    segmentation: str = "hybrid",
    answer: str | None = None,
    reward: float | None = None,
    **kwargs,
) -> Trace:
    """Explain one completion: token stats, steps, credits. See ``explain_batch`` for options."""
    return explain_batch(
        model,
        tokenizer,
        [prompt],
        [completion],
        method=method,
        segmentation=segmentation,
        answers=[answer],
        rewards=None if reward is None else [reward],
        **kwargs,
    )[0]
