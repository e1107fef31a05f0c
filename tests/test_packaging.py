"""Packaging: the CI workflows, the cibuildwheel configuration and the platform recipes,
and the license the installed distribution carries.

All but the last read files of the source tree (not the installed package); a run without
the tree next to the tests (e.g. tests copied elsewhere) skips them.
"""
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = os.path.join(ROOT, ".github", "workflows")
PLATFORMS = os.path.join(ROOT, "platforms")
PYPROJECT = os.path.join(ROOT, "pyproject.toml")
TARGETS = ("aarch64", "armv7l", "armv6l")
PYTHONS = ("cp39", "cp310", "cp311", "cp312", "cp313", "cp314")


def _need(path):
    if not os.path.exists(path):
        pytest.skip("%s is not next to the tests (not a source checkout)" % os.path.relpath(path, ROOT))
    return path


def _yaml():
    try:
        import yaml
    except ImportError:
        pytest.skip("PyYAML is not installed (pip install pyyaml) - workflow YAML not checked")
    return yaml


def _workflow(name):
    yaml = _yaml()
    with open(_need(os.path.join(WORKFLOWS, name)), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict) and doc.get("jobs"), name
    return doc


def _on(doc):
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean True.
    return doc.get("on", doc.get(True))


def _steps(job):
    return job.get("steps", [])


def _uses(job):
    return [s.get("uses", "") for s in _steps(job)]


def _runs(job):
    return "\n".join(s.get("run", "") for s in _steps(job))


def _pyproject():
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError:
            pytest.skip("neither tomllib (Python 3.11+) nor tomli is available")
    with open(_need(PYPROJECT), "rb") as f:
        return tomllib.load(f)


# ------------------------------------------------------------------------------ workflows

@pytest.mark.parametrize("name", ["wheels.yml", "tests.yml"])
def test_workflow_parses(name):
    doc = _workflow(name)
    for job_id, job in doc["jobs"].items():
        assert "runs-on" in job, job_id
        assert _steps(job), job_id
        for step in _steps(job):
            assert ("uses" in step) != ("run" in step), (job_id, step)


def test_tests_workflow_runs_the_readme_commands_on_push_and_pull_request():
    doc = _workflow("tests.yml")
    on = _on(doc)
    assert "push" in on and "pull_request" in on
    runs = "\n".join(_runs(job) for job in doc["jobs"].values())
    assert re.search(r"pip install \.\[test\]", runs)
    assert re.search(r"^\s*pytest\s*$", runs, re.M)


def test_wheels_workflow_builds_x86_64_aarch64_armv7l_under_qemu_with_cibuildwheel():
    doc = _workflow("wheels.yml")
    job = doc["jobs"]["wheels"]
    matrix = job["strategy"]["matrix"]
    assert set(matrix["arch"]) == {"x86_64", "aarch64", "armv7l"}
    assert set(matrix["libc"]) == {"manylinux", "musllinux"}
    uses = _uses(job)
    assert any(u.startswith("docker/setup-qemu-action@") for u in uses)
    assert any(u.startswith("pypa/cibuildwheel@") for u in uses)
    assert any(u.startswith("actions/upload-artifact@") for u in uses)


def test_wheels_workflow_has_an_sdist_job_and_publishes_tags_with_trusted_publishing():
    doc = _workflow("wheels.yml")
    jobs = doc["jobs"]
    assert "check_sdist.sh" in _runs(jobs["sdist"])
    publish = jobs["publish"]
    assert "refs/tags/" in publish["if"]
    assert set(publish["needs"]) >= {"wheels", "sdist"}
    assert publish["permissions"]["id-token"] == "write"
    assert any(u.startswith("pypa/gh-action-pypi-publish@") for u in _uses(publish))
    # Trusted publishing: no long-lived token is handed to the publish action.
    for step in _steps(publish):
        assert "password" not in (step.get("with") or {})
    # Top-level permissions stay read-only; only the publish job gets an OIDC token.
    assert doc["permissions"] == {"contents": "read"}
    tags = _on(doc)["push"]["tags"]
    assert tags


# -------------------------------------------------------------------- cibuildwheel config

def test_cibuildwheel_config_covers_the_matrix():
    cibw = _pyproject()["tool"]["cibuildwheel"]
    builds = cibw["build"]
    builds = builds.split() if isinstance(builds, str) else builds
    assert sorted(b.split("-")[0] for b in builds) == sorted(PYTHONS)
    assert set(cibw["linux"]["archs"]) == {"x86_64", "aarch64", "armv7l"}
    assert "{project}/tests" in cibw["test-command"] and "pytest" in cibw["test-command"]
    extras = _pyproject()["project"]["optional-dependencies"]
    for extra in cibw["test-extras"]:
        assert extra in extras
    env = cibw["linux"]["environment"]
    assert "-g0" in env["CFLAGS"] and "native" not in env["CFLAGS"]
    emulated = [o for o in cibw.get("overrides", [])
                if o.get("test-environment", {}).get("OTELMETRICS_TEST_PROFILE") == "emulated"]
    assert emulated and "aarch64" in emulated[0]["select"] and "armv7l" in emulated[0]["select"]


def _cibuildwheel_identifiers():
    """Every identifier the installed cibuildwheel knows (its build-platforms table)."""
    table = os.path.join(os.path.dirname(importlib.util.find_spec("cibuildwheel").origin),
                         "resources", "build-platforms.toml")
    with open(table) as f:
        return set(re.findall(r'identifier\s*=\s*"([^"]+)"', f.read()))


def test_cibuildwheel_identifiers():
    """The identifiers cibuildwheel would build (no Docker needed to list them)."""
    if importlib.util.find_spec("cibuildwheel") is None:
        pytest.skip("cibuildwheel is not installed (pip install cibuildwheel)")
    # With this interpreter: under emulation a `cibuildwheel` found on PATH is the host's.
    out = subprocess.run(
        [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", "linux",
         "--archs", "x86_64,aarch64,armv7l"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    ids = set(out.stdout.split())
    want = {"%s-%s_%s" % (py, libc, arch)
            for py in PYTHONS for libc in ("manylinux", "musllinux")
            for arch in ("x86_64", "aarch64", "armv7l")}
    # A cibuildwheel older than a CPython does not know it (2.23, the newest for Python 3.9,
    # stops at 3.13): only whole versions may be missing from what it knows, never the oldest.
    known = _cibuildwheel_identifiers()
    unknown = {i.split("-")[0] for i in want - known}
    assert "cp39" not in unknown and {i for i in want if i.split("-")[0] in unknown} <= want - known
    assert ids == want & known


# ------------------------------------------------------------------------------ platforms

@pytest.mark.parametrize("target", TARGETS)
def test_platform_recipe(target):
    env_file = _need(os.path.join(PLATFORMS, target, "target.env"))
    with open(env_file, encoding="utf-8") as f:
        text = f.read()
    values = dict(re.findall(r'^([A-Z_]+)="?([^"\n]*)"?$', text, re.M))
    for key in ("DEB_ARCH", "TRIPLET", "QEMU", "PY_PLATFORM", "WHEEL_ARCH", "TARGET_CFLAGS"):
        assert key in values, key
    assert values["WHEEL_ARCH"] == target
    assert values["PY_PLATFORM"] == "linux-" + target
    assert "native" not in values["TARGET_CFLAGS"]
    if target != "aarch64":
        assert "-mfloat-abi=hard" in values["TARGET_CFLAGS"]
    if target == "aarch64":
        # The emulated suite runs on the wheel's lowest core (ARMv8.0-A, so it also proves the
        # baseline), never qemu's "max": its pointer-authentication emulation made trixie's
        # python3.13 (built with PAC/BTI) about 10x slower (platforms/README.md).
        assert values.get("QEMU_CPU") in ("cortex-a53", "cortex-a57", "cortex-a72"), values.get("QEMU_CPU")
    if target == "armv6l":
        assert re.search(r"-march=armv6", values["TARGET_CFLAGS"])
        assert "-marm" in values["TARGET_CFLAGS"]
        assert "v6" in values["REQUIRE_CPU_ARCH"] and "v7" not in values["REQUIRE_CPU_ARCH"]


@pytest.mark.parametrize("script", ["build.sh", "check_sdist.sh", "pythons.sh", "check_cython.sh"])
def test_platform_scripts_are_valid_bash(script):
    path = _need(os.path.join(PLATFORMS, script))
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not available")
    out = subprocess.run([bash, "-n", path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_build_script_rejects_an_unknown_target():
    path = _need(os.path.join(PLATFORMS, "build.sh"))
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not available")
    out = subprocess.run([bash, path, "sparc"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "usage" in out.stderr
    for target in TARGETS:
        assert target in out.stderr


def test_release_flags_in_setup_are_portable():
    with open(_need(os.path.join(ROOT, "setup.py")), encoding="utf-8") as f:
        text = f.read()
    assert "-O2" in text
    assert not re.search(r"""["']-m(arch|cpu|tune)=native["']""", text)


def test_the_installed_distribution_carries_the_license_text():
    dist = importlib.metadata.distribution("otelmetrics")
    assert dist.metadata["License-Expression"] == "Apache-2.0"
    assert dist.metadata.get_all("License-File") == ["LICENSE"]
    text = dist.read_text("licenses/LICENSE")
    assert text is not None, "no .dist-info/licenses/LICENSE in the installed distribution"
    assert "Apache License" in text[:100] and "Version 2.0, January 2004" in text[:200]
    assert "END OF TERMS AND CONDITIONS" in text and len(text) == 11358


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
