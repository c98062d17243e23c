"""A plan checked (model.py), ordered by the code (order.py) and queued as a run
(queueing.py), on the fixture repository tests/python/fixtures/plan/shop."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
from harness.plan import graph, model, order, queueing, render
from harness.plan.errors import PlanError
from harness.report.style import Style
from harness.store import open_store, queue

SHOP = Path(__file__).resolve().parent / "fixtures" / "plan" / "shop"


def item(item_id: str, files: list[str], size: int = 1, deps: list[str] | None = None, **more: Any) -> dict[str, Any]:
    return {"id": item_id, "title": f"Do {item_id}", "prompt": f"Do {item_id} well.", "files": files, "size": size,
            "depends_on": deps or [], **more}


def shop_plan() -> dict[str, Any]:
    """What tests/fakeapi's `plan` scenario answers."""
    return {"summary": "Log in by email.", "items": [
        item("models", ["app/models.py"], 3),
        item("api", ["app/api.py", "tests/login_check.py"], 5),
        item("cli", ["app/cli.py"], 2),
        item("web", ["web/src/client.ts"], 2, ["api"], verify="test -f web/src/client.ts"),
        item("docs", ["docs/login.md"], 1, ["cli"]),
    ]}


def ordered(raw: dict[str, Any], repo: Path = SHOP) -> order.Ordered:
    return order.order(model.check(raw, repo), graph.build(repo))


def test_imports_order_the_plan_and_the_longest_chain_is_critical() -> None:
    o = ordered(shop_plan())
    assert o.depends_on == {"models": [], "api": ["models"], "cli": ["api"], "web": ["api"], "docs": ["cli"]}
    assert [(e.before, e.after, e.because) for e in o.added] == [
        ("models", "api", (("app/api.py", "app/models.py"),)),
        ("api", "cli", (("app/cli.py", "app/api.py"),)),
    ]
    assert o.critical_path == ["models", "api", "cli", "docs"] and o.critical_size == 11 and o.total_size == 13
    assert {i.id: o.priority(i.id) for i in o.plan.items} == {
        "models": "high", "api": "high", "cli": "high", "web": "normal", "docs": "high"}
    assert o.unmapped == {"docs": ["docs/login.md"]}
    assert o.touched["api"] == ["app/api.py", "tests/login_check.py"]


def test_the_plans_own_order_wins_over_an_import_and_is_reported() -> None:
    raw = shop_plan()
    raw["items"][0]["depends_on"] = ["api"]  # models after api, though api imports models
    o = ordered(raw)
    assert o.depends_on["api"] == [] and o.depends_on["models"] == ["api"]
    assert [(e.before, e.after) for e in o.against] == [("models", "api")]
    text = render.plan_text(o, Style(io.StringIO(), enabled=False, safe=False))
    assert "models comes after api, yet app/api.py imports app/models.py" in text


def test_an_order_already_given_through_others_adds_nothing() -> None:
    raw = shop_plan()
    raw["items"][2]["depends_on"] = ["web"]  # cli after web after api: api -> cli is given
    o = ordered(raw)
    assert [(e.before, e.after) for e in o.added] == [("models", "api")]
    assert o.depends_on["cli"] == ["web"]


def test_files_name_directories_globs_modules_and_stems() -> None:
    fmap = order.FileMap(graph.build(SHOP))
    assert fmap.match("app") == ["app/__init__.py", "app/api.py", "app/cli.py", "app/db.py", "app/models.py"]
    assert fmap.match("web/src/*.ts") == ["web/src/client.ts", "web/src/index.ts", "web/src/types.ts"]
    assert fmap.match("app.db") == ["app/db.py"]
    assert fmap.match("web/src/client") == ["web/src/client.ts"]
    assert fmap.match("web/lib/util") == ["web/lib/util/index.js"]
    assert fmap.match("README.md") == [] and fmap.match("new/file.py") == []


def test_code_cycles_are_reported_and_the_plan_goes_on(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("import a\n")
    o = ordered({"items": [item("one", ["a.py"], 2), item("two", ["b.py"], 3)]}, tmp_path)
    assert o.code_cycles == [["a.py", "b.py"]]
    # each imports the other: the plan's order decides, the other way is reported
    assert [(e.before, e.after) for e in o.added] == [("one", "two")]
    assert [(e.before, e.after) for e in o.against] == [("two", "one")]
    assert o.critical_path == ["one", "two"] and o.critical_size == 5


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["items"][3].update(depends_on=["api", "ghost"]),
     "the plan names unknown dependencies: web depends on unknown item ghost"),
    (lambda p: p["items"][2].update(depends_on=["docs"]), "the plan has a dependency cycle: cli -> docs -> cli"),
    (lambda p: p["items"][1].update(depends_on=["api"]), "the plan has a dependency cycle: api -> api"),
    (lambda p: p["items"][1].update(id="models"), "duplicate item id models"),
    (lambda p: p["items"][1].pop("prompt"), "item 2 (api): missing prompt"),
    (lambda p: p["items"][2].update(size="big"), "item 3 (cli) size must be a whole number from 1 to 13, got 'big'"),
    (lambda p: p["items"][2].update(size=True), "item 3 (cli) size must be a whole number from 1 to 13, got True"),
    (lambda p: p["items"][0].update(id="no spaces"), "item 1: invalid id 'no spaces'"),
    (lambda p: p["items"][0].update(files=["../etc/passwd"]), "item 1 (models) files[0]: '../etc/passwd' is outside"),
    (lambda p: p["items"][0].update(owner="me"), "item 1 (models): unknown field 'owner'"),
    (lambda p: p["items"][0].update(title="  "), "item 1 (models) title is empty"),
    (lambda p: p["items"][0].update(verify="true\0rm"), "item 1 (models) verify holds a NUL byte"),
    (lambda p: p.update(items=[]), "the plan has no items"),
    (lambda p: p.update(extra=1), "unknown field 'extra' in the plan"),
])
def test_a_bad_plan_is_refused_with_one_line_naming_what_is_wrong(change: Any, message: str) -> None:
    raw = copy.deepcopy(shop_plan())
    change(raw)
    with pytest.raises(PlanError) as err:
        model.check(raw, SHOP)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_schema_given_to_the_cli_requires_what_check_requires() -> None:
    items = model.SCHEMA["properties"]["items"]["items"]
    assert items["required"] == list(model.REQUIRED_FIELDS)
    assert sorted(items["properties"]) == sorted(model.ITEM_FIELDS)
    assert items["additionalProperties"] is False


def test_applied_plan_is_one_run_with_dependencies_and_priorities(tmp_path: Path) -> None:
    store = open_store(tmp_path / "state")
    store.init()
    o = ordered(shop_plan())
    ids = queueing.apply(store, o, "login")
    assert ids == ["login.models", "login.api", "login.cli", "login.web", "login.docs"]
    _, web = store.get("login.web")
    assert (web["run"], web["priority"], web["depends_on"], web["verify"]) == (
        "login", "normal", ["login.api"], "test -f web/src/client.ts")
    assert web["prompt"].endswith("expected to touch web/src/client.ts.)\n")
    assert store.get("login.api")[1]["priority"] == "high"
    assert store.get("login.api")[1]["depends_on"] == ["login.models"]
    with pytest.raises(PlanError, match="run login exists already"):
        queueing.apply(store, o, "login")


def test_a_plan_is_queued_whole_or_not_at_all(tmp_path: Path) -> None:
    store = open_store(tmp_path / "state")
    store.init()
    store.add([("test", {"id": "other.cli", "prompt": "taken"})])  # the queue id of one item, taken
    with pytest.raises(queue.QueueError, match=r"duplicate id other\.cli"):
        queueing.apply(store, ordered(shop_plan()), "other")
    assert list(store.states()) == ["other.cli"]


def test_a_run_name_that_makes_ids_too_long_is_refused() -> None:
    raw = shop_plan()
    raw["items"][0]["id"] = "m" * 32
    with pytest.raises(PlanError, match="over 64 characters"):
        queueing.queue_ids(ordered(raw), "r" * 40)
