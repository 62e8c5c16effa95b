"""The app's view builders and file readers, without a server or a model."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from acpo import render
from app import views
from app.loaders import InputError, PathGuard, detect_layout, open_run, read_rollouts


def step_frame(credits, entropies=None):
    n = len(credits)
    entropies = entropies or [0.5] * n
    starts = [3 * i for i in range(n)]
    return pd.DataFrame({
        "step": range(n),
        "text": [f"s{i}=<b>\n" for i in range(n)],
        "token_start": starts,
        "token_end": [s + 3 for s in starts],
        "n_tokens": [3] * n,
        "entropy_mean": entropies,
        "entropy_max": [e + 1 for e in entropies],
        "credit_info_gain": credits,
        "reward": [0.0] * n,
    })


# --- colour scaling ---


def test_a_signed_scale_maps_the_largest_magnitude_to_one_and_keeps_signs():
    scale = render.credit_scale("credit_info_gain", [0.2, -0.4, 0.1])
    assert scale.signed and scale.top == 0.4 and scale.unit == "nats"
    assert [scale.weight(v) for v in [0.2, -0.4, 0.1]] == pytest.approx([0.5, -1.0, 0.25])


def test_a_scale_of_all_zeros_and_nan_is_zero():
    scale = render.credit_scale("credit_uniform", [0.0, 0.0])
    assert [scale.weight(0.0), scale.weight(float("nan"))] == [0.0, 0.0]
    assert render.credit_scale("credit_info_gain", [float("nan"), 2.0]).weight(2.0) == 1.0


def test_credit_colour_is_white_at_zero_and_diverges_by_sign():
    assert render.credit_color(0.0) == "rgb(255, 255, 255)"
    assert render.credit_color(1.0) == "rgb(%d, %d, %d)" % render.POSITIVE_RGB
    assert render.credit_color(-1.0) == "rgb(%d, %d, %d)" % render.NEGATIVE_RGB
    half = render.credit_color(0.5)
    assert half == "rgb(144, 178, 214)"  # halfway between white and (33, 102, 172); 178.5 rounds to even


def test_display_table_rounds_floats_only_for_the_screen():
    frame = pd.DataFrame({"step": [0], "credit_info_gain": [0.000123456789], "text": ["a"]})
    out = views.display_table(frame)
    assert out.loc[0, "credit_info_gain"] == 0.0001235 and frame.loc[0, "credit_info_gain"] == 0.000123456789
    assert list(out.columns) == list(frame.columns)


def test_top_steps_picks_the_largest_magnitudes():
    assert views.top_steps([0.1, -0.9, 0.3, 0.0], fraction=0.5) == [1, 2]
    assert views.top_steps([0.0, 0.0]) == []


# --- the step table ---


def test_step_table_puts_reader_columns_first_and_keeps_every_value():
    frame = step_frame([0.1, -0.2])
    frame["credit_hapo"] = [0.0, 0.5]
    frame["answer_logprob"] = [-1.0, -0.5]
    out = views.step_table(frame, "hapo")
    assert list(out.columns[:8]) == [
        "step", "credit_hapo", "text", "n_tokens", "entropy_mean", "entropy_max", "credit_info_gain", "answer_logprob"
    ]
    assert sorted(out.columns) == sorted(frame.columns)
    pd.testing.assert_frame_equal(out[frame.columns], frame)


# --- heatmaps ---


def test_step_heatmap_colours_each_step_by_its_scaled_credit():
    html = render.step_heatmap_html(step_frame([0.5, -1.0, 0.0]), "credit_info_gain")
    assert html.count('class="acpo-step"') == 3
    assert render.credit_color(0.5) in html and render.credit_color(-1.0) in html and render.credit_color(0.0) in html
    assert "▼ lowest credit" in html


def test_step_heatmap_escapes_step_text_and_shows_hover_numbers():
    html = render.step_heatmap_html(step_frame([0.25]), "credit_info_gain", prompt="<script>x</script>")
    assert "<b>" not in html and "&lt;b&gt;" in html
    assert "<script>" not in html
    assert "credit_info_gain +0.25 " in html and "3 tokens" in html and "entropy mean 0.500" in html


def test_step_heatmap_marks_the_checkers_first_wrong_step():
    html = render.step_heatmap_html(step_frame([0.1, -0.3, 0.2]), "credit_info_gain", first_error_step=1)
    marked = html.split('data-step="1"')[1].split("</span>")[0]
    assert "dashed" in marked and "first wrong step" in marked
    assert html.count("✗ first error") == 1


def test_step_heatmap_names_a_missing_credit_column():
    with pytest.raises(ValueError, match="credit_hapo"):
        render.step_heatmap_html(step_frame([0.1]), "credit_hapo")


def test_token_heatmap_scales_entropy_and_advantage():
    html = render.token_heatmap_html(["a", "b"], [0.0, 2.0], "entropy", [0, 1])
    assert render.entropy_color(1.0) in html and render.entropy_color(0.0) in html
    html = render.token_heatmap_html(["a", "<"], [-0.5, 0.25], "advantage")
    assert render.credit_color(-1.0) in html and render.credit_color(0.5) in html and "&lt;" in html
    with pytest.raises(ValueError):
        render.token_heatmap_html(["a"], [1.0, 2.0])


# --- figures ---


def test_entropy_figure_has_one_point_per_token_boundaries_and_shaded_top_steps():
    frame = step_frame([0.1, -0.9, 0.3])
    fig = views.entropy_figure([0.1 * j for j in range(9)], list("abcdefghi"), frame, "credit_info_gain", fraction=0.3)
    assert list(fig.data[0].y) == pytest.approx([0.1 * j for j in range(9)])
    shapes = fig.layout.shapes
    lines = [s for s in shapes if s.type == "line"]
    rects = [s for s in shapes if s.type == "rect"]
    assert sorted(s.x0 for s in lines) == [2.5, 5.5]
    assert [(r.x0, r.x1) for r in rects] == [(2.5, 5.5)]  # step 1, the largest |credit|, blamed: red
    assert rects[0].fillcolor == render.credit_color(-1.0)


def test_compare_figure_and_table_show_each_checkpoint_and_the_difference():
    frames = {"step-0": step_frame([0.1, 0.2]), "step-9": step_frame([0.4, -0.2])}
    fig = views.compare_figure(frames, "credit_info_gain")
    bars = [t for t in fig.data if t.type == "bar"]
    assert [list(b.y) for b in bars] == [[0.1, 0.2], [0.4, -0.2], pytest.approx([0.3, -0.4])]
    table = views.compare_table(frames, "credit_info_gain")
    assert list(table["diff step-9 - step-0"]) == pytest.approx([0.3, -0.4])
    assert {"credit_info_gain @ step-0", "entropy_mean @ step-9"} <= set(table.columns)


def test_run_figure_plots_only_logged_metrics_and_marks_the_stage_switch():
    metrics = pd.DataFrame({"step": [0, 1, 2, 3], "reward": [0.1, 0.2, 0.3, 0.4], "kl": [None, None, 0.1, 0.2],
                            "stage": [1, 1, 2, 2]})
    fig = views.run_figure(metrics)
    assert {t.name for t in fig.data} == {"reward", "kl"}
    assert views.stage_switch_step(metrics) == 2
    assert any(s.type == "line" and s.x0 == 2 for s in fig.layout.shapes)
    assert views.hapo_figure(metrics) is None


def test_hapo_figure_stacks_the_four_quadrants():
    metrics = pd.DataFrame({"step": [0, 1], **{k: [0.25, 0.25] for k in views.HAPO_KEYS}})
    fig = views.hapo_figure(metrics)
    assert [t.name for t in fig.data] == ["pos_high", "pos_low", "neg_high", "neg_low"]


def test_credit_histogram_splits_by_reward():
    table = pd.DataFrame({"credit_info_gain": [0.1, -0.1, 0.3], "reward": [1.0, 0.0, 1.0]})
    fig = views.credit_histogram(table, "credit_info_gain")
    assert [len(t.x) for t in fig.data] == [2, 1]


# --- readers ---


def test_path_guard_refuses_paths_outside_the_roots(tmp_path):
    inside = tmp_path / "runs" / "r1"
    inside.mkdir(parents=True)
    guard = PathGuard([tmp_path / "runs"])
    assert guard.resolve(str(inside)) == inside.resolve()
    for bad in ["/etc/passwd", str(tmp_path / "runs" / ".." / "secret"), str(tmp_path)]:
        with pytest.raises(InputError, match="outside the folders"):
            guard.resolve(bad)
    link = tmp_path / "runs" / "escape"
    link.symlink_to("/etc")
    with pytest.raises(InputError, match="outside the folders"):
        guard.resolve(str(link / "passwd"))


def test_read_rollouts_plain_trl_and_verl_layouts(tmp_path):
    plain = tmp_path / "plain.csv"
    frame = pd.DataFrame({"prompt": ["Q: 1+1=?\n"], "completion": ["1+1=2\n#### 2"], "answer": ["2"]})
    frame.to_csv(plain, index=False)
    out, layout = read_rollouts(plain)
    assert layout == "plain" and out.loc[0, "answer"] == "2" and out.loc[0, "reward"] is None

    trl = tmp_path / "completions_00010.parquet"
    pd.DataFrame({"step": [10, 10], "prompt": ["p", "p"], "completion": ["a", "b"], "accuracy_reward": [1.0, 0.0],
                  "format_reward": [0.5, 0.5], "advantage": [0.7, -0.7]}).to_parquet(trl)
    out, layout = read_rollouts(trl)
    assert layout == "trl" and list(out["reward"]) == [1.5, 0.5] and list(out["prompt_id"]) == ["p0", "p0"]

    verl = tmp_path / "12.jsonl"
    verl.write_text(json.dumps({"input": "p", "output": "o\n#### 3", "score": 1.0, "gts": "3", "step": 12}) + "\n")
    out, layout = read_rollouts(verl)
    assert layout == "verl" and out.loc[0, "completion"] == "o\n#### 3" and out.loc[0, "answer"] == "3"


def test_read_rollouts_names_missing_columns_bad_encoding_and_size(tmp_path):
    f = tmp_path / "x.csv"
    pd.DataFrame({"question": ["q"], "response": ["r"]}).to_csv(f, index=False)
    with pytest.raises(InputError, match="no column 'prompt', 'completion'.*found columns"):
        read_rollouts(f)
    f = tmp_path / "latin.csv"
    f.write_bytes("prompt,completion\nq,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_rollouts(f)
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as fh:
        fh.truncate(50 * 1024 * 1024)  # sparse: 50 MB on paper, nothing on disk
    with pytest.raises(InputError, match="50.0 MB; the limit is"):
        read_rollouts(big)


def test_open_run_reads_metrics_checkpoints_and_trace_steps(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-5").mkdir(parents=True)
    (run / "traces").mkdir()
    pd.DataFrame({"step": [0]}).to_parquet(run / "traces" / "step-5.parquet")
    (run / "metrics.jsonl").write_text('{"step": 1, "reward": 0.5}\n{"step": 0, "reward": 0.1}\n{"step": 2, "rew')
    r = open_run(run)
    assert list(r.metrics["step"]) == [0, 1] and r.trace_steps == [5] and [p.name for p in r.checkpoints] == ["step-5"]
    with pytest.raises(InputError, match="does not look like a run folder"):
        open_run(tmp_path)


def test_layout_detection():
    assert detect_layout(["input", "output", "score"]) == "verl"
    assert detect_layout(["step", "prompt", "completion", "advantage"]) == "trl"
    assert detect_layout(["prompt", "completion"]) == "plain"
