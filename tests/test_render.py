"""The core's heatmap renderer as a notebook sees it: ``Trace._repr_html_`` and ``Trace.show``."""

from __future__ import annotations

import acpo
from acpo import render

PROMPT = "Q: 7-3*4+2=?\n"
WRONG = "3*4=12\n7-12=-4\n-4+2=-2\n#### -2"


def test_a_trace_renders_itself_with_the_renderer_the_app_uses(model_and_tok):
    model, tok = model_and_tok
    trace = acpo.explain(model, tok, PROMPT, WRONG, method=["hapo", "acpo"], segmentation="lines", answer="-3",
                         reward=0.0)
    html = trace._repr_html_()
    assert html == render.step_heatmap_html(trace.to_frame(), "credit_hapo", PROMPT)
    assert html.count('class="acpo-step"') == len(trace.steps) == 4
    assert trace.html("acpo", view="entropy").count('<span title="token ') == len(trace.tokens)


def test_show_prints_the_summary_outside_a_notebook(model_and_tok, capsys):
    model, tok = model_and_tok
    trace = acpo.explain(model, tok, PROMPT, WRONG, method="uniform", segmentation="lines")
    trace.show()
    assert capsys.readouterr().out.strip() == repr(trace)
