"""Chat prompts: rendered once by the tokenizer's template, no special token twice, clear errors."""

import copy

import pytest

import acpo
from acpo.prompts import PromptStyle, render_prompt
from acpo.tasks import get_task
from acpo.tokens import encode_prompt
from conftest import char_tokenizer, tiny_llama

# A Llama-2-like template: it writes the BOS token itself, so the tokenizer must not add another.
TEMPLATE = ("{{ bos_token }}{% for m in messages %}({{ m['role'][0] }}){{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}(a){% endif %}")
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Q: 1+1=?"}]


@pytest.fixture
def chat_tok():
    tok = char_tokenizer()
    tok.chat_template = TEMPLATE
    tok.add_bos_token = True
    return tok


def test_template_renders_with_generation_prompt(chat_tok):
    assert render_prompt(chat_tok, MESSAGES) == "<s>(s)be brief\n(u)Q: 1+1=?\n(a)"


def test_bos_is_not_duplicated(chat_tok):
    ids = encode_prompt(chat_tok, MESSAGES)
    assert ids.count(chat_tok.bos_token_id) == 1 and ids[0] == chat_tok.bos_token_id
    # the reference: the template tokenised by transformers itself
    assert ids == list(chat_tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True)["input_ids"])


def test_pre_rendered_and_plain_string_prompts(chat_tok):
    rendered = render_prompt(chat_tok, MESSAGES)
    assert encode_prompt(chat_tok, rendered) == encode_prompt(chat_tok, MESSAGES)  # not wrapped twice
    as_user = encode_prompt(chat_tok, "Q: 1+1=?")
    assert as_user == encode_prompt(chat_tok, [{"role": "user", "content": "Q: 1+1=?"}])
    plain = encode_prompt(chat_tok, "Q: 1+1=?", chat_template=False)
    assert plain == list(chat_tok("Q: 1+1=?")["input_ids"])


def test_tokenizer_without_template_keeps_plain_text():
    tok = char_tokenizer()
    assert render_prompt(tok, "Q: 1+1=?\n") == "Q: 1+1=?\n"
    with pytest.raises(ValueError, match="has no chat template.*plain text"):
        render_prompt(tok, MESSAGES)


@pytest.mark.parametrize("bad, message", [
    ([{"role": "wizard", "content": "x"}], "unknown role 'wizard'"),
    ([{"role": "user", "content": 3}], "int content"),
    ([{"content": "x"}], "needs the keys"),
    ([], "non-empty list"),
])
def test_bad_messages_are_refused(chat_tok, bad, message):
    with pytest.raises(ValueError, match=message):
        render_prompt(chat_tok, bad)


def test_prompt_style_wraps_questions_for_chat_models_only(chat_tok):
    problem = get_task("arith").generate(1, level=1, seed=0)[0]
    style = PromptStyle(system_prompt="sys", instruction="Solve: {question}")
    assert style.prompt_for(chat_tok, problem) == [{"role": "system", "content": "sys"},
                                                   {"role": "user", "content": f"Solve: {problem.question}"}]
    assert style.prompt_for(char_tokenizer(), problem) == problem.prompt  # no template: the Q: format
    assert PromptStyle(chat_template=False).prompt_for(chat_tok, problem) == problem.prompt
    with pytest.raises(ValueError, match="placeholder"):
        PromptStyle(instruction="no placeholder")


def test_explain_takes_messages_and_equals_the_rendered_string(chat_tok):
    model = tiny_llama(len(chat_tok))
    completion = "1+1=2\n#### 2"
    from_messages = acpo.explain(model, chat_tok, MESSAGES, completion, method="info_gain", segmentation="lines", answer="2")
    from_text = acpo.explain(model, chat_tok, render_prompt(chat_tok, MESSAGES), completion, method="info_gain",
                             segmentation="lines", answer="2")
    assert from_messages.prompt == render_prompt(chat_tok, MESSAGES)
    assert from_messages.logprobs.tolist() == from_text.logprobs.tolist()
    with pytest.raises(ValueError, match="special token '</s>' at character 5.*assistant's text only"):
        acpo.explain(model, chat_tok, MESSAGES, "1+1=2</s>\n#### 2", method="info_gain", answer="2")
