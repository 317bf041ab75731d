"""Unit tests of the simulator's building blocks: patches, selectors, store and watch cache."""

from __future__ import annotations

import pytest

from kubesim.errors import ApiError
from kubesim.patch import json_patch, merge_patch, strategic_merge
from kubesim.selectors import parse_field_selector, parse_label_selector, selector_from_match
from kubesim.store import Store
from kubesim.util import human_duration, int_or_percent


def test_strategic_merge_by_key_with_order_and_directives() -> None:
    orig = {"spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]},
                                    {"name": "b", "image": "2"}],
                     "finalizers": ["x"], "tolerations": [{"key": "t"}]}}
    patch = {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}, {"name": "c"}],
                      "containers": [{"name": "a", "image": "9"}, {"name": "c", "image": "3"}],
                      "finalizers": ["y"], "tolerations": [{"key": "u"}]}}
    out = strategic_merge(orig, patch)
    assert [(c["name"], c["image"]) for c in out["spec"]["containers"]] == [("b", "2"), ("a", "9"), ("c", "3")]
    assert out["spec"]["containers"][1]["env"] == [{"name": "X", "value": "1"}]
    assert out["spec"]["finalizers"] == ["x", "y"]  # merge strategy for primitives
    assert out["spec"]["tolerations"] == [{"key": "u"}]  # no strategy: replaced
    out = strategic_merge(out, {"spec": {"containers": [{"name": "b", "$patch": "delete"}],
                                         "$deleteFromPrimitiveList/finalizers": ["x"]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["a", "c"] and out["spec"]["finalizers"] == ["y"]
    assert strategic_merge({"a": {"b": 1, "c": 2}}, {"a": {"$patch": "replace", "d": 3}}) == {"a": {"d": 3}}
    assert strategic_merge({"a": {"b": 1, "c": 2}}, {"a": {"$retainKeys": ["b"], "b": 5}}) == {"a": {"b": 5}}
    assert orig["spec"]["containers"][0]["image"] == "1"  # input untouched


def test_strategic_merge_ports_key_depends_on_list() -> None:
    svc = {"ports": [{"port": 80, "name": "http"}, {"port": 443}]}
    assert strategic_merge(svc, {"ports": [{"port": 80, "name": "web"}]})["ports"] == [
        {"port": 80, "name": "web"}, {"port": 443}]
    ctr = {"ports": [{"containerPort": 80}]}
    assert strategic_merge(ctr, {"ports": [{"containerPort": 81}]})["ports"] == [{"containerPort": 80}, {"containerPort": 81}]


def test_merge_and_json_patch() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None, "d": 3}, "l": [2]}) == {
        "a": {"c": 2, "d": 3}, "l": [2]}
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = json_patch(doc, [{"op": "add", "path": "/a/-", "value": 3}, {"op": "remove", "path": "/b/c"},
                           {"op": "copy", "from": "/a/0", "path": "/z"}, {"op": "move", "from": "/z", "path": "/y"},
                           {"op": "replace", "path": "/a/0", "value": 0}, {"op": "test", "path": "/y", "value": 1}])
    assert out == {"a": [0, 2, 3], "b": {}, "y": 1}
    with pytest.raises(ApiError) as err:
        json_patch(doc, [{"op": "test", "path": "/a/0", "value": 5}])
    assert err.value.code == 422
    with pytest.raises(ApiError):
        json_patch(doc, [{"op": "replace", "path": "/missing/x", "value": 1}])


def test_label_selectors() -> None:
    sel = parse_label_selector("app=web,tier in (a, b),!legacy,env!=prod,owner")
    assert sel is not None
    assert sel({"app": "web", "tier": "a", "env": "dev", "owner": "x"})
    assert not sel({"app": "web", "tier": "c", "owner": "x"})
    assert not sel({"app": "web", "tier": "a", "owner": "x", "legacy": "1"})
    assert not sel({"app": "web", "tier": "a"})
    notin = parse_label_selector("tier notin (a)")
    assert notin is not None and notin({}) and not notin({"tier": "a"})
    assert parse_label_selector("") is None
    m = selector_from_match({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]})
    assert m({"a": "1", "b": ""}) and not m({"a": "1"})
    assert selector_from_match({})({"anything": "x"})


def test_field_selectors() -> None:
    terms = parse_field_selector("spec.nodeName=n1,status.phase!=Failed", ("spec.nodeName", "status.phase"))
    assert terms == [("spec.nodeName", "n1", True), ("status.phase", "Failed", False)]
    with pytest.raises(ApiError) as err:
        parse_field_selector("spec.bogus=1", ("spec.nodeName",))
    assert err.value.code == 400 and "field label not supported: spec.bogus" in err.value.message


def test_store_revisions_and_watch_cache_expiry() -> None:
    s = Store(watch_cache_size=3)
    with s.lock:
        e1 = s.put("configmaps", {"metadata": {"name": "a", "namespace": "d"}})
        s.put("configmaps", {"metadata": {"name": "b", "namespace": "d"}})
        assert s.get("configmaps", "d", "a")["metadata"]["resourceVersion"] == str(e1.rv)
        start = s.rv
        for i in range(3):
            s.put("configmaps", {"metadata": {"name": f"x{i}", "namespace": "d"}})
        got = s.events_since("configmaps", start)
        assert got is not None and [ev.name for ev in got] == ["x0", "x1", "x2"]
        s.put("configmaps", {"metadata": {"name": "x3", "namespace": "d"}})
        assert s.events_since("configmaps", start) is None  # compacted: 410
        s.remove("configmaps", "d", "a")
        assert s.get("configmaps", "d", "a") is None
        ev = s.events_since("configmaps", s.rv - 1)
        assert ev is not None and ev[0].type == "DELETED" and ev[0].prev is not None
        # other resources keep their own history
        assert s.events_since("secrets", 0) == []


def test_snapshot_load_moves_revision_forward() -> None:
    s = Store()
    with s.lock:
        s.put("configmaps", {"metadata": {"name": "a", "namespace": "d"}})
    rv, items = s.dump()
    import json

    s.load(rv, [(k, json.loads(d)) for k, d in items], lambda key: None)
    assert s.rv > rv and s.get("configmaps", "d", "a") is not None
    assert s.events_since("configmaps", rv) is None  # watches from before the restore must relist


def test_helpers() -> None:
    assert human_duration(5) == "5s" and human_duration(150) == "2m30s" and human_duration(3 * 3600 + 120) == "3h2m"
    assert human_duration(3 * 86400) == "3d"
    assert int_or_percent("25%", 10, True) == 3 and int_or_percent("25%", 10, False) == 2 and int_or_percent(2, 10, True) == 2
