"""Text <-> token ids with character offsets, and the batch layout shared by all code.

Layout: prompts left-padded, completions right-padded, concatenated (as TRL
and ``generate`` produce them). Completion-aligned tensors have shape
(batch, time) with a mask for the right padding.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch

from acpo.prompts import Prompt, render_prompt_templated


def require_pad_token(tokenizer) -> int:
    """The pad id; a clear error when the tokenizer has none."""
    if tokenizer.pad_token_id is None:
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} has no pad token; set one before batching, "
            "e.g. `tokenizer.pad_token = tokenizer.eos_token`"
        )
    return int(tokenizer.pad_token_id)


def encode_prompt(tokenizer, prompt: Prompt, chat_template: bool = True) -> list[int]:
    """Prompt ids as at generation time: plain text with the tokenizer's special tokens (e.g. BOS),
    or a chat prompt rendered by :func:`acpo.prompts.render_prompt`, whose template already wrote
    them (so they are not added twice, as in TRL)."""
    text, templated = render_prompt_templated(tokenizer, prompt, chat_template)
    return list(tokenizer(text, add_special_tokens=not templated)["input_ids"])


def encode_with_offsets(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids of ``text`` (no special tokens) and each token's ``(start, end)`` character span.

    Fast tokenizers give an offset mapping; for slow ones we fall back to
    incremental decoding (decode each prefix and measure how far it reaches).
    """
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(map(int, o)) for o in enc["offset_mapping"]]
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids, offsets_by_decoding(tokenizer, ids, text)


def offsets_by_decoding(tokenizer, ids: Sequence[int], text: str | None = None) -> list[tuple[int, int]]:
    """Character spans of ``ids`` in their decoded text, by decoding growing prefixes."""
    offsets, prev = [], 0
    for j in range(len(ids)):
        cur = len(tokenizer.decode(list(ids[: j + 1]), skip_special_tokens=False))
        offsets.append((prev, max(prev, cur)))
        prev = max(prev, cur)
    if text is not None and prev != len(text):
        warnings.warn(
            f"decoded completion has {prev} characters but the text has {len(text)}; "
            "character spans are approximate for this tokenizer"
        )
    return offsets


def encode_probe(tokenizer, probe: str, answer: str) -> tuple[list[int], int]:
    """Ids of ``probe + answer`` tokenized together, and how many trailing ids are the answer.

    Tokenizing jointly gives the tokens the model would actually see; a token
    that straddles the probe/answer border counts as an answer token.
    """
    if not answer or not answer.strip():
        raise ValueError(f"answer {answer!r} is empty; pass the final answer string, e.g. answer='42'")
    ids, offsets = encode_with_offsets(tokenizer, probe + answer)
    n_answer = sum(1 for _, end in offsets if end > len(probe))
    if n_answer == 0:
        raise ValueError(
            f"answer {answer!r} tokenizes to nothing after the probe {probe!r}; "
            "check that the tokenizer's vocabulary covers the answer's characters"
        )
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and unk in ids[len(ids) - n_answer:]:
        text = probe + answer
        unknown = sorted({text[s:e] for (s, e), i in zip(offsets, ids) if i == unk and e > len(probe)})
        raise ValueError(f"answer {answer!r} has characters this tokenizer does not know ({', '.join(map(repr, unknown))}"
                         f" become {tokenizer.unk_token!r}); its probability would be that of an unknown token: write "
                         "the answer in characters the model's vocabulary covers")
    return ids, n_answer


def context_length(model) -> int | None:
    """The model's maximum sequence length, if its config says."""
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def longest_token_chars(tokenizer) -> int:
    """The most characters one token of ``tokenizer`` spells (its vocabulary's longest entry, at least 1): a text
    of more than ``n`` times this many characters has more than ``n`` tokens, known without tokenizing it."""
    cached = getattr(tokenizer, "_acpo_longest_token", None)
    if cached is None:
        cached = max([len(t) for t in tokenizer.get_vocab()] + [1])
        try:
            tokenizer._acpo_longest_token = cached
        except AttributeError:
            pass
    return cached


def check_fits(model, tokenizer, prompt, completion: str, chat_template: bool = True) -> None:
    """:func:`check_context` for a prompt and completion given as text; one so long that it cannot fit is refused
    from its length alone, never tokenized (a hostile megabyte costs nothing), and checked before anything parses it.
    """
    limit = context_length(model)
    most = None if limit is None else limit * longest_token_chars(tokenizer)
    for what, text in (("prompt", prompt if isinstance(prompt, str) else ""), ("completion", completion)):
        if most is not None and len(text) > most:
            raise ValueError(f"the {what} ({len(text):,} characters) is longer than the model's context of {limit} "
                             f"tokens can hold; shorten the {what} or use a model with a longer context")
    check_context(model, len(encode_prompt(tokenizer, prompt, chat_template)),
                  len(tokenizer(completion, add_special_tokens=False)["input_ids"]))


def check_context(model, prompt_len: int, completion_len: int, extra: int = 0, what: str = "") -> None:
    """Raise when prompt + completion (+ probe) do not fit the model's context."""
    limit = context_length(model)
    total = prompt_len + completion_len + extra
    if limit is not None and total > limit:
        more = f" + {extra} probe tokens{what}" if extra else ""
        raise ValueError(
            f"prompt ({prompt_len} tokens) + completion ({completion_len} tokens){more} = {total} "
            f"tokens, longer than the model's context of {limit} tokens; shorten the completion "
            "or use a model with a longer context"
        )


def pad_batch(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prompt_ids, prompt_mask) left-padded and (completion_ids, completion_mask) right-padded."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    b = len(prompts)
    p = max(len(x) for x in prompts)
    c = max(1, max(len(x) for x in completions))
    prompt_ids = torch.full((b, p), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((b, p), dtype=torch.long)
    completion_ids = torch.full((b, c), pad_id, dtype=torch.long)
    completion_mask = torch.zeros((b, c), dtype=torch.long)
    for i, (x, y) in enumerate(zip(prompts, completions)):
        if len(x):
            prompt_ids[i, p - len(x) :] = torch.tensor(list(x))
            prompt_mask[i, p - len(x) :] = 1
        if len(y):
            completion_ids[i, : len(y)] = torch.tensor(list(y))
            completion_mask[i, : len(y)] = 1
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def decode_with_offsets(tokenizer, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """Text of generated ``ids`` (special tokens dropped) and each id's character span in it.

    Decoding token by token is O(T); when the pieces do not add up to the
    whole (a character split across byte tokens) we fall back to decoding
    growing prefixes. Special tokens (e.g. EOS) get an empty span at the end.
    """
    special = set(tokenizer.all_special_ids)
    text = tokenizer.decode(list(ids), skip_special_tokens=True)
    pieces = ["" if i in special else tokenizer.decode([i]) for i in ids]
    if "".join(pieces) != text:
        offsets, prev = [], 0
        for j in range(len(ids)):
            cur = len(tokenizer.decode(list(ids[: j + 1]), skip_special_tokens=True))
            offsets.append((prev, max(prev, cur)))
            prev = max(prev, cur)
        return text, offsets
    offsets, pos = [], 0
    for piece in pieces:
        offsets.append((pos, pos + len(piece)))
        pos += len(piece)
    return text, offsets
