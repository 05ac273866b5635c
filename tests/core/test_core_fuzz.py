"""Property-based tests: whatever bytes or JSON the loader gets, it either returns a valid
Project or raises ProjectError — never anything else."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio.core.errors import ProjectError
from studio.core.model import Project
from studio.core.persistence import dump_project, parse_project

DIGEST = "ab" * 32

VALID: dict[str, Any] = {
    "schema_version": 1,
    "id": "p1",
    "name": "Fuzz",
    "assets": {DIGEST: {"path": "assets/x.png", "sha256": DIGEST, "width": 10, "height": 10}},
    "characters": [{"id": "c1", "name": "A", "references": [
        {"id": "r1", "asset": "assets/x.png", "angle": "front"}]}],
    "shots": [{"id": "s1", "title": "One", "character_id": "c1", "start_asset": "assets/x.png",
               "takes": [{"id": "t1", "video": "takes/s1/t1.mp4", "seed": 3,
                          "backend": "preview", "width": 64, "height": 64, "frames": 9,
                          "fps": 16}],
               "active_take_id": "t1"}],
}

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=5)
                           | st.dictionaries(st.text(max_size=10), children, max_size=5),
                           max_leaves=25)


def _accepts_or_project_error(raw: str | bytes) -> None:
    try:
        project = parse_project(raw)
    except ProjectError:
        return
    assert isinstance(project, Project)
    # Whatever it accepted must survive a save/load round trip unchanged.
    assert parse_project(dump_project(project)) == project


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes) -> None:
    _accepts_or_project_error(raw)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    _accepts_or_project_error(json.dumps(value))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


ALL_PATHS = _paths(VALID)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL_PATHS), json_values, st.booleans())
def test_mutated_valid_document(path: tuple, value: Any, delete: bool) -> None:
    doc = json.loads(json.dumps(VALID))
    if not path:
        doc = value
    else:
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if delete:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    _accepts_or_project_error(json.dumps(doc))


def test_the_valid_document_is_valid() -> None:
    project = parse_project(json.dumps(VALID))
    assert project.shots[0].active_take.seed == 3


@settings(max_examples=100, deadline=None)
@given(title=st.text(max_size=200), prompt=st.text(max_size=500),
       duration=st.floats(min_value=0.1, max_value=600), fps=st.integers(1, 120),
       seed=st.integers(0, 2**32 - 1), resolution=st.sampled_from(["480p", "720p", "1080p"]),
       aspect=st.sampled_from(["16:9", "9:16", "1:1"]))
def test_valid_shots_round_trip(title: str, prompt: str, duration: float, fps: int, seed: int,
                                resolution: str, aspect: str) -> None:
    doc = json.loads(json.dumps(VALID))
    doc["shots"][0].update(title=title, prompt=prompt, duration_s=duration, fps=fps, seed=seed,
                           resolution=resolution, aspect=aspect)
    project = parse_project(json.dumps(doc))
    assert parse_project(dump_project(project)) == project
    assert project.shots[0].prompt == prompt and project.shots[0].duration_s == duration
