"""`pip install .`: the wheel holds every module, the bundled assets and both commands, and works outside the checkout.

The full check, a fresh virtual environment with `pip install '.[app]' -c constraints.txt` then
`acpo-train --help` and `acpo-app`, downloads and installs for minutes; it is written out in
docs/PACKAGING.md and run by hand. Here the wheel is built without dependencies (about a second)
and imported from an unpacked copy.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_TOOLS = {"pytest", "hypothesis", "playwright"}  # requirements-dev.txt, never requirements.txt (a Space's)


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (building writes build/ and *.egg-info beside them)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("acpo", "app", "assets"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("acpo-*.whl")
    return path


def test_wheel_holds_every_module_and_every_bundled_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = ({f"acpo/{f}" for f in _files(ROOT / "acpo")}
                | {f"acpo/app/{f}" for f in _files(ROOT / "app")}
                | {f"acpo/assets/{f}" for f in _files(ROOT / "assets")})
    assert expected - names == set()
    assert "acpo/assets/demo-policy/model.safetensors" in names


def test_wheel_declares_both_commands(wheel):
    with zipfile.ZipFile(wheel) as z:
        (ep_name,) = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
        eps = configparser.ConfigParser()
        eps.read_string(z.read(ep_name).decode())
    assert dict(eps["console_scripts"]) == {"acpo-train": "acpo.cli:train_main", "acpo-app": "acpo.cli:app_main"}


def test_every_pinned_requirement_is_declared_at_its_tested_version():
    """requirements.txt (the tested pins) and pyproject.toml (what `pip install .` asks for) agree."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {}
    for req in project["dependencies"] + sum(project["optional-dependencies"].values(), []):
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([^,;\s]+)", req)
        if m:
            declared[m.group(1).lower()] = m.group(2)
    pinned = pins("requirements.txt") | pins("requirements-dev.txt")
    assert {n: declared.get(n) for n in pinned} == pinned


def pins(name: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            package, version = line.split("==")
            out[package.lower()] = version
    return out


def test_the_space_installs_no_test_tool_and_the_readme_installs_them_for_the_tests():
    assert not TEST_TOOLS & set(pins("requirements.txt")) and TEST_TOOLS == set(pins("requirements-dev.txt"))
    readme = (ROOT / "README.md").read_text()
    test_command = readme.split("<!-- test-command -->")[1].split("```bash")[1].split("```")[0].strip()
    assert "-r requirements.txt -r requirements-dev.txt" in test_command and test_command.endswith("pytest")
    assert readme.count("<!-- main-command -->") == readme.count("<!-- test-command -->") == 1


def test_the_readme_front_matter_is_within_the_hubs_limits():
    """Hugging Face Spaces' configuration reference: short_description at most 60 characters, a known sdk,
    colours from its list, an app_file that exists, the sdk version the Space runs = the pinned gradio."""
    import yaml

    front = yaml.safe_load((ROOT / "README.md").read_text().split("---")[1])
    assert len(front["short_description"]) <= 60, front["short_description"]
    assert front["sdk"] == "gradio" and (ROOT / front["app_file"]).is_file()
    colours = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert front["colorFrom"] in colours and front["colorTo"] in colours
    assert front["sdk_version"] == pins("requirements.txt")["gradio"]
    assert str(front["python_version"]) == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_installed_copy_finds_its_assets_and_starts(wheel, tmp_path):
    """Unpacked outside the checkout: the demo policy loads from the package, the app module imports."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    script = f"""
import sys
sys.path.insert(0, {str(site)!r})
from pathlib import Path
import acpo, acpo.resources
from acpo.models import DEMO_POLICY, load_policy
assert Path(acpo.__file__).is_relative_to({str(site)!r}), acpo.__file__
assert acpo.resources.CHECKOUT is None
model, tok = load_policy(DEMO_POLICY)
assert Path(DEMO_POLICY) == Path({str(site)!r}) / "acpo" / "assets" / "demo-policy"
from acpo.app.loaders import DEFAULT_SAMPLES, REPO_ROOT, read_samples
import acpo.app.main
assert DEFAULT_SAMPLES.is_file() and REPO_ROOT == Path.cwd()
print("ok", type(model).__name__, len(read_samples()))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok LlamaForCausalLM ")
    assert int(done.stdout.split()[-1]) > 0


def test_without_the_app_extra_acpo_train_works_and_acpo_app_names_the_install_command(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = f"""
import sys
sys.path.insert(0, {str(site)!r})
sys.modules["gradio"] = sys.modules["plotly"] = None  # as if `pip install .` without [app]
from acpo.cli import app_main, train_main
try:
    train_main(["--help"])
except SystemExit as done:
    assert done.code == 0
app_main([])
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "--method" in done.stdout
    assert done.stderr.strip() == ("acpo-app: gradio is not installed; install acpo with the app's extra "
                                   "(pip install '.[app]' in the checkout), or gradio and plotly")
