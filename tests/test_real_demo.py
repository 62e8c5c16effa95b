"""The real-model demo policy's builder: its data, its calibration gate, what it writes."""

import json

import pytest
import torch
from safetensors.torch import load_file

from acpo import real_demo
from acpo.tasks import check, heldout_problems, make_problems
from conftest import char_tokenizer, tiny_llama


def test_worked_solutions_are_spaced_and_the_checker_reads_them():
    for p in make_problems(mix=real_demo.REAL_DEMO_MIX, n=90, seed=3):
        text = real_demo.working(p)
        assert check(p, text).correct, text
        assert "#### " + p.answer in text and "*" not in text.replace(" * ", "")
    assert real_demo.spaced("-5+2=-3") == "-5 + 2 = -3"
    assert real_demo.spaced("3*-4=-12") == "3 * -4 = -12"


def test_a_slip_in_a_spaced_line_is_the_first_error():
    p = next(q for q in make_problems(mix=(("arith", 2),), n=20, seed=1) if len(q.solution.splitlines()) == 4)
    lines = real_demo.working(p).splitlines()
    a, _, value = lines[1].rpartition(" = ")
    lines[1] = f"{a} = {int(value) + 1}"  # the second computation is off by one
    assert check(p, "\n".join(lines)).first_error == 1


def test_held_out_problems_are_the_trainers_and_never_trained_on():
    held = real_demo.heldout(100)
    assert [p.prompt for p in held] == [p.prompt for p in heldout_problems(300, real_demo.REAL_DEMO_MIX)]
    trained = {p.prompt for p in real_demo.training_problems(real_demo.RealDemoConfig())}
    assert trained and not trained & {p.prompt for p in heldout_problems(600, real_demo.REAL_DEMO_MIX)}


@pytest.fixture
def tiny_build(monkeypatch, tmp_path):
    """``build`` on a tiny in-code model; ``measure`` returns the pass rates the test asks for."""
    tok = char_tokenizer()
    monkeypatch.setattr(real_demo, "load_policy", lambda name, device=None: (tiny_llama(len(tok)), tok))

    def run(sampled: float, *flags: str) -> tuple[int, dict]:
        measured = {}

        def measure(model, tokenizer, cfg):
            one = lambda p: {"pass@1": p, "by_family": {"arith L1": p}, "failures": 10, "failures_located": 0.5,  # noqa: E731
                             "n": 20}
            measured["lora"] = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
            return {"greedy": one(sampled + 0.1), "sampled": one(sampled)}

        monkeypatch.setattr(real_demo, "measure", measure)
        rc = real_demo.main(["build", "--steps", "2", "--batch-size", "2", "--out", str(tmp_path / "policy"), *flags])
        return rc, measured

    return run, tmp_path / "policy"


def test_a_policy_outside_the_calibration_band_is_refused_and_nothing_is_written(tiny_build, capsys):
    run, out = tiny_build
    rc, _ = run(0.9)
    assert rc == 1 and not out.exists()
    assert "outside the calibration band" in capsys.readouterr().err
    assert not any(p.name.startswith(".real-demo-") for p in out.parent.iterdir())


def test_a_policy_inside_the_band_writes_the_measured_adapter_and_its_card(tiny_build):
    run, out = tiny_build
    rc, measured = run(0.45)
    assert rc == 0
    saved = load_file(out / "adapter_model.safetensors")
    assert saved and all(t.dtype == torch.bfloat16 for t in saved.values())
    # the figures were measured on exactly the weights saved (rounded to bfloat16 before measuring)
    for name, value in measured["lora"].items():
        key = next(k for k in saved if name.replace(".default", "").endswith(k.split("base_model.model.", 1)[-1]))
        assert torch.equal(saved[key].float(), value), name
    card = (out / "README.md").read_text()
    assert "**0.450**" in card
    assert json.loads((out / "results.json").read_text())["sampled"]["pass@1"] == 0.45
    assert json.loads((out / "build_config.json").read_text())["steps"] == 2
