"""The core's heatmap renderer as a notebook sees it: ``Trace._repr_html_`` and ``Trace.show``."""

from __future__ import annotations

import acpo
from acpo import render

PROMPT = "Q: 7-3*4+2=?\n"
WRONG = "3*4=12\n7-12=-4\n-4+2=-2\n#### -2"


def test_a_trace_renders_itself_with_the_renderer_the_app_uses(model_and_tok):
    model, tok = model_and_tok
    trace = acpo.explain(model, tok, PROMPT, WRONG, method=["hapo", "info_gain"], segmentation="lines", answer="-3",
                         reward=0.0)
    html = trace._repr_html_()
    assert html == render.step_heatmap_html(trace.to_frame(), "credit_hapo", PROMPT)
    assert html.count('class="acpo-step"') == len(trace.steps) == 4
    assert trace.html("info_gain", view="entropy").count('<span title="token ') == len(trace.tokens)


def test_show_prints_the_summary_outside_a_notebook(model_and_tok, capsys):
    model, tok = model_and_tok
    trace = acpo.explain(model, tok, PROMPT, WRONG, method="uniform", segmentation="lines")
    trace.show()
    assert capsys.readouterr().out.strip() == repr(trace)


def frame(credits, column="credit_info_gain", texts=None):
    import pandas as pd

    n = len(credits)
    return pd.DataFrame({"step": range(n), "text": texts or [f"s{i}\n" for i in range(n)], column: credits})


def test_signed_credits_use_the_diverging_map_with_the_absolute_scale_in_the_legend():
    html = render.step_heatmap_html(frame([3.1, -14.6, 0.0]), "credit_info_gain")
    assert "−14.6 nats (blame)" in html and "+14.6 nats (credit)" in html
    assert render.credit_color(-1.0) in html and 'data-signed="true"' in html


def test_one_sided_scores_use_a_sequential_map():
    html = render.step_heatmap_html(frame([-0.5, -7.0, -1.0], "credit_mean_logprob"), "credit_mean_logprob")
    assert 'data-signed="false"' in html and "−7 nats" in html
    assert render.sequential_color(1.0) in html and render.credit_color(-1.0) not in html
    assert "▼ lowest credit" in html.split('data-step="1"')[1].split('data-step="2"')[0]


def test_a_shared_scale_colours_equal_credits_equally_across_panels():
    a = render.step_heatmap_html(frame([1.0, -1.0]), "credit_info_gain", top=4.0)
    b = render.step_heatmap_html(frame([4.0, -2.0]), "credit_info_gain", top=4.0)
    assert 'data-scale="4"' in a and 'data-scale="4"' in b
    assert render.credit_color(0.25) in a and render.credit_color(0.25) not in b  # 1 of 4, not 1 of 1


def test_every_step_is_numbered_also_when_a_step_spans_lines():
    html = render.step_heatmap_html(frame([0.2, -0.1], texts=["a=1\nb=2\n", "#### 2"]), "credit_info_gain")
    assert html.count('class="acpo-stepno"') == 2
    assert ">0</span><span class=\"acpo-step\" data-step=\"0\"" in html


def test_uniform_credit_blames_no_step():
    html = render.step_heatmap_html(frame([0.0, 0.0], "credit_uniform"), "credit_uniform")
    assert "lowest credit" not in html and "None" not in html
    html = render.step_heatmap_html(frame([0.5, -1.0, -1.0]), "credit_info_gain")
    assert "lowest credit" not in html  # two steps share the lowest credit: acpo.verdict.blamed_step blames neither


def test_token_views_keep_the_error_outline_lowest_badge_and_step_numbers():
    html = render.token_heatmap_html(list("abcd"), [0.1, 0.2, -0.3, 0.4], "advantage", [0, 2], None,
                                     error_step=1, lowest_step=0)
    assert html.count('class="acpo-stepno"') == 2 and "✗ first error" in html and "▼ lowest credit" in html
    assert html.count("underline wavy") == 2  # the two tokens of step 1
    assert "±" not in html and "+0.4 advantage (credit)" in html
