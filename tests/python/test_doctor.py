"""scripts/doctor.sh: each gap a first run would hit is named, with its fix, and
fails the exit code; nothing secret is ever printed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness.ops import doctor

ROOT = Path(__file__).resolve().parents[2]
DOCTOR = ROOT / "scripts" / "doctor.sh"
MOCK = ROOT / "tests" / "mocks" / "claude"
SECRET = "sk-ant-doctor-test-3f9c1b7e"


@pytest.fixture
def place(tmp_path: Path) -> dict[str, Any]:
    """A state directory (0700) and a git repository with a commit, and the environment a
    first run would have: a key in the environment, the mock CLI, no configuration file."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "README").write_text("x\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HARNESS_", "ANTHROPIC_", "CLAUDE")) and k != "NOTIFY_SOCKET"}
    env.update(HOME=str(home), HARNESS_STATE_DIR=str(state), HARNESS_REPO_DIR=str(repo), CLAUDE_BIN=str(MOCK),
               ANTHROPIC_API_KEY=SECRET, HARNESS_MIN_FREE_MB="1")
    return {"state": state, "repo": repo, "home": home, "env": env, "tmp": tmp_path}


def run(place: dict[str, Any], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(DOCTOR), *args], env={**place["env"], **env}, capture_output=True, text=True,
                          timeout=120)
    assert SECRET not in proc.stdout + proc.stderr
    return proc


def checks(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    doc = json.loads(proc.stdout)
    assert doc["ok"] is (proc.returncode == 0)
    return {c["name"]: c for c in doc["checks"]}


def test_a_ready_machine_passes_and_a_cli_outside_the_tested_range_is_a_warning(place: dict[str, Any]) -> None:
    proc = run(place)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.rstrip().endswith("all checks pass")
    assert re.search(r"^ok +credentials: ANTHROPIC_API_KEY is set$", proc.stdout, re.M)
    assert re.search(r"^WARN +claude CLI: .*0\.0\.0 \(mock claude\), outside the tested", proc.stdout, re.M)
    got = checks(run(place, "--json"))
    assert {"bash", "python", "python packages", "git", "jq", "flock", "setsid", "claude CLI", "credentials",
            "state directory", "free disk", "repository", "store", "permissions"} <= set(got)
    assert got["repository"]["status"] == "ok" and str(place["repo"]) in got["repository"]["detail"]


def test_each_gap_fails_with_its_fix(place: dict[str, Any]) -> None:
    place["state"].chmod(0o755)
    proc = run(place, "--json", ANTHROPIC_API_KEY="", CLAUDE_BIN=str(place["tmp"] / "no-claude"),
               HARNESS_BASE_REF="no-such-branch", HARNESS_MIN_FREE_MB="999999999999")
    assert proc.returncode == 1
    got = checks(proc)
    want = {"state directory": f"chmod 700 {place['state']}", "credentials": "claude setup-token",
            "claude CLI": "make setup", "repository": "set BASE_REF", "free disk": "lower MIN_FREE_MB"}
    for name, fix in want.items():
        assert got[name]["status"] == "fail" and fix in got[name]["fix"], got[name]
    text = run(place, ANTHROPIC_API_KEY="", HARNESS_REPO_DIR=str(place["tmp"]))
    assert text.returncode == 1
    assert f"FAIL  repository: {place['tmp']} is not a git repository" in text.stdout
    assert text.stdout.rstrip().endswith("3 check(s) failed")  # the state, the credentials, the repository


def test_credentials_are_found_where_the_cli_keeps_them_and_never_shown(place: dict[str, Any]) -> None:
    (place["home"] / ".claude").mkdir()
    (place["home"] / ".claude" / ".credentials.json").write_text(json.dumps({"token": SECRET}))
    got = checks(run(place, "--json", ANTHROPIC_API_KEY=""))
    assert got["credentials"]["status"] == "ok" and ".credentials.json exists" in got["credentials"]["detail"]


def test_a_missing_tool_is_named_with_its_package(place: dict[str, Any], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "flock", "setsid", "timeout"):  # jq left out
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    got = {c.name: c for c in doctor.check_tools({"PATH": str(bin_dir)})}
    assert (got["jq"].status, got["jq"].fix) == ("fail", "apt-get install jq")
    assert all(got[t].status == "ok" for t in ("git", "flock", "setsid", "timeout"))


def test_a_python_without_the_packages_fails_before_anything_else(place: dict[str, Any]) -> None:
    proc = run(place, "--json", HARNESS_PYTHON="/usr/bin/python3", PYTHONPATH="")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["checks"][0]["name"] == "python" and "make setup" in doc["checks"][0]["fix"]


def test_the_tested_range_starts_at_the_pinned_cli() -> None:
    pinned = re.search(r"^CLAUDE_CODE_PINNED := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert pinned is not None and doctor.TESTED_CLI[0] == pinned.group(1)


def test_a_fleet_database_reachable_with_the_clock_checked_or_down_in_one_line(
        place: dict[str, Any], pg_schema: str) -> None:
    url = os.environ["HARNESS_DATABASE_URL"]
    got = checks(run(place, "--json", HARNESS_STORE="postgres", HARNESS_DATABASE_URL=url))
    assert got["store"]["status"] == "ok" and "PostgreSQL" in got["store"]["detail"]
    assert got["clock"]["status"] == "ok" and re.search(r"[+-]\d+\.\d{3} s from the database's", got["clock"]["detail"])
    down = run(place, "--json", HARNESS_STORE="postgres",
               HARNESS_DATABASE_URL="postgresql://harness:hunter2-pw@127.0.0.1:1/fleet")
    assert down.returncode == 1 and "hunter2-pw" not in down.stdout
    store = checks(down)["store"]
    assert store["status"] == "fail" and store["detail"].startswith("postgres: database fleet on 127.0.0.1 is unreachable")
    assert "\n" not in store["detail"]


def test_the_sandbox_is_checked_and_skip_permissions_without_one_is_a_warning(place: dict[str, Any]) -> None:
    got = checks(run(place, "--json", HARNESS_SKIP_PERMISSIONS="true"))
    assert got["permissions"]["status"] == "warn" and "SANDBOX=bwrap" in got["permissions"]["fix"]
    got = checks(run(place, "--json", HARNESS_SKIP_PERMISSIONS="true", HARNESS_SANDBOX="bwrap"))
    assert got["sandbox"]["status"] == ("warn" if os.getuid() == 0 else "ok") and got["permissions"]["status"] == "ok"
    no_bwrap = {c.name: c for c in doctor.check_permissions({"SANDBOX": "bwrap"}, {"PATH": str(place["tmp"])})}
    assert (no_bwrap["sandbox"].status, no_bwrap["sandbox"].fix) == ("fail", "apt-get install bubblewrap")


def test_the_unit_s_environment_file_and_user_are_what_is_checked(place: dict[str, Any]) -> None:
    env_file = place["tmp"] / "harness.env"
    env_file.write_text(f'# the unit\'s\nANTHROPIC_API_KEY="{SECRET}"\n\nHARNESS_MIN_FREE_MB=1\n')
    got = checks(run(place, "--json", "--env-file", str(env_file), ANTHROPIC_API_KEY=""))
    assert got["credentials"]["status"] == "ok" and got["credentials"]["detail"] == "ANTHROPIC_API_KEY is set"
    env_file.write_text(f"ANTHROPIC_API_KEY {SECRET}\n")
    bad = run(place, "--env-file", str(env_file))
    assert bad.returncode == 2 and "line 1 is not KEY=VALUE" in bad.stderr
    unknown = run(place, "--user", "no-such-user-x")
    assert unknown.returncode == 2 and "no such user: no-such-user-x" in unknown.stderr


@pytest.mark.skipif(os.getuid() != 0, reason="checking for another user needs root (runuser)")
def test_as_root_the_loop_s_user_is_checked_not_root(place: dict[str, Any]) -> None:
    got = checks(run(place, "--json", "--user", "nobody"))
    state = got["state directory"]
    assert state["status"] == "fail" and "not nobody (65534)" in state["detail"]
    assert state["fix"].startswith(f"chown -R nobody {place['state']}")
    # the tests' temp directory is root's, 0700: nobody cannot enter it; opened, git refuses
    # a repository nobody does not own
    repo = got["repository"]
    assert (repo["status"], repo["detail"]) == ("fail", f"{place['repo']}: nobody cannot enter it")
    for d in (place["tmp"], *place["tmp"].parents):
        if d == Path("/tmp"):
            break
        d.chmod(d.stat().st_mode | 0o055)
    repo = checks(run(place, "--json", "--user", "nobody"))["repository"]
    assert (repo["status"], repo["detail"]) == ("fail", f"{place['repo']}: git refuses it to nobody (dubious ownership)")
