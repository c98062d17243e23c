"""One configuration schema (lib/config.schema) for bash and Python: the helpers'
keys and defaults, the sidecar's options, --print-config and docs/configuration.md
all agree with it, and an unknown key is an error wherever it arrives."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

import pytest
from harness import config
from harness.__main__ import main, parser
from harness.pipeline.policy import Policy

ROOT = Path(__file__).resolve().parents[2]
PY_TYPES = {"int": "int", "num": "float", "str": "str", "bool": "str"}


def test_the_helpers_read_exactly_the_keys_of_scope_helpers_with_the_schema_defaults() -> None:
    fields = {f.name: f for f in dataclasses.fields(Policy)}
    helpers = {k.name: k for k in config.schema().values() if k.scope == "helpers"}
    assert set(fields) == set(helpers)
    defaults = Policy()
    for name, key in helpers.items():
        assert fields[name].type == PY_TYPES[key.type], name
        assert getattr(defaults, name) == config.default(name), name


def test_an_unknown_or_foreign_key_or_a_bad_value_is_refused() -> None:
    with pytest.raises(config.UnknownKeyError, match="unknown configuration key NO_SUCH_KEY"):
        Policy.from_pairs(["NO_SUCH_KEY=1"])
    with pytest.raises(config.UnknownKeyError, match="IDLE_POLL_S is not one the helpers read"):
        Policy.from_pairs(["IDLE_POLL_S=2"])
    with pytest.raises(config.BadValueError, match="MAX_ATTEMPTS must be a whole number"):
        Policy.from_pairs(["MAX_ATTEMPTS=many"])
    assert Policy.from_pairs(["MAX_ATTEMPTS=7", "RETRY_BASE_S=0.5"]).MAX_ATTEMPTS == 7


def test_a_helper_command_given_an_unknown_key_says_so_in_one_line(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["status", "--state-dir", str(tmp_path), "--json", "--cfg", "NO_SUCH_KEY=1"])
    err = capsys.readouterr().err
    assert (rc, err) == (2, "harness: unknown configuration key NO_SUCH_KEY (not in lib/config.schema)\n")


def test_a_malformed_schema_is_an_error_naming_its_line() -> None:
    with pytest.raises(config.SchemaError, match=r"config.schema:2: expected"):
        config.parse("A | int | 1 | loop | fine\nB | float | 1 | loop | no such type\n")
    with pytest.raises(config.SchemaError, match=":2:"):
        config.parse("A | int | 1 | loop | once\nA | int | 2 | loop | twice\n")


def test_the_sidecar_and_script_options_default_to_the_schema() -> None:
    args = parser().parse_args(["sidecar", "--state-dir", "x"])
    assert (args.stall_timeout_s, args.tool_timeout_s, args.heartbeat_s, args.monitor_poll_s) == tuple(
        config.default(k) for k in ("STALL_TIMEOUT_S", "TOOL_TIMEOUT_S", "HEARTBEAT_S", "MONITOR_POLL_S"))
    assert parser().parse_args(["worktrees", "--state-dir", "x", "list"]).older_than_days == \
        config.default("WORKTREE_MAX_AGE_DAYS")


def test_bash_reads_the_same_keys_and_defaults(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "CLAUDE"))}
    env["HOME"] = str(tmp_path)
    out = subprocess.run([str(ROOT / "loop.sh"), "--config", "/dev/null", "--print-config"], env=env,
                         capture_output=True, text=True, check=True).stdout
    printed = {}
    for line in out.splitlines():
        m = re.fullmatch(r"(\S+) += (.*?) *# (.*)", line)
        assert m, line
        printed[m.group(1)] = (m.group(2), m.group(3))
    assert list(printed) == list(config.schema())
    for name, key in config.schema().items():
        if name != "CLAUDE_BIN":  # resolved on PATH or to make setup's CLI
            assert printed[name] == (key.default, "default"), name


def test_docs_show_the_schema_as_it_is() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- config-table: generated from lib/config.schema -->\n(.*?)<!-- /config-table -->", text, re.S)
    assert found, "docs/configuration.md lost its generated table"
    assert found.group(1) == config.markdown(), "regenerate it: make docs"
