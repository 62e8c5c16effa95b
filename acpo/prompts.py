"""What the model sees: a prompt is plain text or a list of chat messages, rendered in one place.

A prompt is either a string or TRL's conversational format, a list of
``{"role": "system" | "user" | "assistant", "content": str}`` messages. With a
tokenizer that has a chat template, :func:`render_prompt` renders it once with
``apply_chat_template(..., add_generation_prompt=True)``; the trainer, the
rollout engines (through :func:`acpo.tokens.encode_prompt`), evaluation,
``acpo.explain`` and the app all go through it. A plain string sent to such a
tokenizer becomes one user message, unless it already holds the template's
special tokens (it was rendered before): then it is used as it is, so a
template is never applied twice. A tokenizer without a template (the
character-level demo policy, base models) gets plain text.

Problems become prompts through :class:`PromptStyle`: a system prompt and an
instruction template around the problem's question, for models that read chat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Message = dict[str, str]
Prompt = str | list[Message]

ROLES = ("system", "user", "assistant", "tool")

ANSWER_FORMATS = {
    "####": ("put the final answer on the last line after ####, e.g. #### 42", "#### "),
    "boxed": ("put the final answer in \\boxed{}, e.g. \\boxed{42}", "\\boxed{"),
}
"""answer format -> (what the default instruction asks for, ACPO's answer probe)."""


def check_messages(messages: Any) -> list[Message]:
    """``messages`` as a list of role/content dicts; ValueError naming the first bad one."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"a chat prompt is a non-empty list of {{'role', 'content'}} messages, got {messages!r:.80}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} ({m!r:.60}) needs the keys 'role' and 'content'")
        if m["role"] not in ROLES:
            raise ValueError(f"message {i} has unknown role {m['role']!r}; valid roles: {', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            kind = type(m["content"]).__name__
            raise ValueError(f"message {i} ({m['role']}) has {kind} content; it must be a string")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _special_texts(tokenizer) -> list[str]:
    """The tokenizer's special-token strings that a chat template writes (``<|im_start|>``, BOS, ...)."""
    texts = set(getattr(tokenizer, "all_special_tokens", []) or [])
    texts |= {str(t) for t in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values()
              if getattr(t, "special", False)}
    return [t for t in texts if t and len(t) > 1]


def is_rendered(tokenizer, text: str) -> bool:
    """Whether ``text`` already holds special tokens of the tokenizer (it went through a template)."""
    return any(t in text for t in _special_texts(tokenizer))


def render_prompt(tokenizer, prompt: Prompt, chat_template: bool = True) -> str:
    """The exact text the model is conditioned on (see the module docstring).

    Args:
        tokenizer: a Hugging Face tokenizer.
        prompt: a string or a list of chat messages.
        chat_template: False sends a string prompt as plain text even when the
            tokenizer has a template (a base model's raw format).
    """
    return render_prompt_templated(tokenizer, prompt, chat_template)[0]


def render_prompt_templated(tokenizer, prompt: Prompt, chat_template: bool = True) -> tuple[str, bool]:
    """``render_prompt``'s text, and whether a chat template wrote it (so its special tokens are in it)."""
    if isinstance(prompt, str):
        if not (chat_template and has_chat_template(tokenizer)):
            return prompt, False
        if is_rendered(tokenizer, prompt):
            return prompt, True
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = check_messages(prompt)
        if not has_chat_template(tokenizer):
            raise ValueError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__} has no chat "
                "template, so a list of chat messages cannot be rendered; pass the prompt as plain text "
                "(e.g. the user message's content) or set tokenizer.chat_template"
            )
        if not chat_template:
            raise ValueError("chat_template=False needs a plain-text prompt, but got a list of chat messages")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True


def default_instruction(answer_format: str = "####") -> str:
    """The instruction wrapped around a question for a chat model, asking for ``answer_format``."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"unknown answer format {answer_format!r}; valid: {', '.join(ANSWER_FORMATS)}")
    return "{question}\nSolve it step by step, one computation per line, then " + ANSWER_FORMATS[answer_format][0] + "."


def answer_probe(answer_format: str) -> str:
    """ACPO's probe for an answer format: the text the model writes right before the answer."""
    return ANSWER_FORMATS[answer_format][1]


@dataclass(frozen=True)
class PromptStyle:
    """How a problem's question becomes a prompt for a model.

    ``chat_template=False`` or a tokenizer without a template: the problem's
    plain prompt (``"Q: ...\\n"``). Otherwise, a user message (after an
    optional system message) with ``instruction.format(question=...)``. A
    problem whose prompt is already a message list is sent as it is.
    """

    chat_template: bool = True
    system_prompt: str = ""
    instruction: str = ""  # "" = default_instruction(answer_format)
    answer_format: str = "####"

    def __post_init__(self):
        default_instruction(self.answer_format)  # validates the format
        if self.instruction and "{question}" not in self.instruction:
            raise ValueError(f"instruction {self.instruction!r} must contain the placeholder {{question}}")

    def prompt_for(self, tokenizer, problem) -> Prompt:
        """The prompt of ``problem`` (an ``acpo.tasks.Problem``) for ``tokenizer``."""
        if not isinstance(problem.prompt, str):
            return problem.prompt
        if not (self.chat_template and has_chat_template(tokenizer)):
            return problem.prompt
        question = problem.question or problem.prompt
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        instruction = self.instruction or default_instruction(self.answer_format)
        return messages + [{"role": "user", "content": instruction.format(question=question)}]
