"""What the app's colours mean: a legend per method, a shared / own / fixed scale, the difference map's own
labels, and a warning when compared models tokenise differently. Tiny models, no server."""

from __future__ import annotations

import os
import re

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import acpo  # noqa: E402
from acpo.credit import CREDIT_METHODS  # noqa: E402
from acpo.models import load_policy  # noqa: E402
from acpo.render import step_heatmap_html  # noqa: E402
from acpo.tasks import get_task  # noqa: E402
from conftest import bpe_tokenizer, char_tokenizer, save, tiny_llama  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("colours")
    char, bpe = char_tokenizer(), bpe_tokenizer()
    problem = get_task("arith").generate(1, level=1, seed=0)[0]
    from app.callbacks import Explorer

    return dict(a=save(tiny_llama(len(char), seed=0, context=128), char, root / "a"),
                b=save(tiny_llama(len(char), seed=1, context=128), char, root / "b"),
                bpe=save(tiny_llama(len(bpe), seed=2, context=128), bpe, root / "bpe"),
                problem=problem, explorer=Explorer([root]))


def scales(html: str) -> list[float]:
    return [float(x) for x in re.findall(r'class="acpo-heatmap" data-scale="([^"]+)"', html)]


def own_tops(world, names, method="info_gain"):
    p = world["problem"]
    out = []
    for name in names:
        model, tok = load_policy(name)
        trace = acpo.explain(model, tok, p.prompt, p.solution, method=method, segmentation="lines", answer=p.answer,
                             reward=1.0, probe="#### ")
        out.append(float(trace.credits[method].abs().max()))
    return out


def test_every_method_says_what_its_number_means_under_its_legend():
    for name, cls in CREDIT_METHODS.items():
        assert len(cls.meaning) > 20, f"{name} has no meaning for its legend"
    import pandas as pd

    table = pd.DataFrame({"step": [0, 1], "text": ["a\n", "b"], "credit_info_gain": [-0.5, 0.25]})
    html = step_heatmap_html(table, "credit_info_gain")
    assert CREDIT_METHODS["info_gain"].meaning.split(":")[0] in html
    assert "−0.5 nats (blame)" in html and "+0.5 nats (credit)" in html


@pytest.mark.parametrize("mode, fixed", [("shared", 1.0), ("own", 1.0), ("fixed", 0.125)])
def test_compare_panels_follow_the_scale_switch(world, mode, fixed):
    p = world["problem"]
    html, *_ = world["explorer"].compare([world["a"], world["b"]], False, p.prompt, p.solution, p.answer, "info_gain",
                                         "lines", "#### ", "arith", True, mode, fixed)
    panels, diff = scales(html)[:2], scales(html)[2]
    tops = own_tops(world, [world["a"], world["b"]])
    expected = {"shared": [max(tops)] * 2, "own": tops, "fixed": [0.125] * 2}[mode]
    assert panels == pytest.approx(expected, rel=1e-4)
    # the difference map: its own scale (the largest |difference|) and labels that are not credit/blame
    diff_html = html[html.index("difference:"):]
    assert "(higher under the last)" in diff_html and "(credit)" not in diff_html and "(blame)" not in diff_html
    assert diff > 0
    assert "tokenizers split the completion differently" not in html


def test_comparing_models_with_different_tokenizers_warns(world):
    p = world["problem"]
    html, *_ = world["explorer"].compare([world["a"], world["bpe"]], False, p.prompt, p.solution, p.answer, "info_gain",
                                         "lines", "#### ", "arith")
    assert "acpo-tokenizer-warning" in html and "tokenizers split the completion differently" in html


def test_explore_draws_a_fixed_scale_when_asked(world):
    p = world["problem"]
    ex = world["explorer"]
    own, *_ = ex.explain(world["a"], False, p.prompt, p.solution, p.answer, "", "arith", "info_gain", "lines", "#### ",
                         "steps: credit")
    fixed, verdict, *_ = ex.explain(world["a"], False, p.prompt, p.solution, p.answer, "", "arith", "info_gain", "lines",
                                    "#### ", "steps: credit", 8, 1.0, 64, 64, True, "fixed", 2.0)
    assert scales(own) == pytest.approx(own_tops(world, [world["a"]]), rel=1e-4)
    assert scales(fixed) == [2.0] and "colour scale ±2 nats" in verdict
    with pytest.raises(Exception, match="needs a number above 0"):
        ex.explain(world["a"], False, p.prompt, p.solution, p.answer, "", "arith", "info_gain", "lines", "#### ",
                   "steps: credit", 8, 1.0, 64, 64, True, "fixed", 0)
