"""The HTML drift report: parsed with html.parser, every shot present, self-contained."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from export_testkit import OUT_H, OUT_W, make_project, write_analysis
from PIL import Image

from studio.core.model import Character
from studio.core.persistence import save_project
from studio.export.plan import ExportOptions, plan_export
from studio.export.report import build_report, overlay_heatmap, write_report


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.h2: list[str] = []
        self.imgs: list[dict[str, str]] = []
        self.sections: list[str] = []
        self.svgs = 0
        self.svg_classes: list[str] = []
        self.polylines = 0
        self.drift_rects = 0
        self.matrix_tables = 0
        self.text: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.stack.append(tag)
        if tag == "img":
            self.imgs.append(a)
        elif tag == "section":
            self.sections.append(a.get("id", ""))
        elif tag == "svg":
            self.svgs += 1
            self.svg_classes.append(a.get("class", ""))
        elif tag == "polyline":
            self.polylines += 1
        elif tag == "rect" and a.get("class") == "drift":
            self.drift_rects += 1
        elif tag == "table" and a.get("class") == "matrix":
            self.matrix_tables += 1
        elif tag in ("link", "script") or (tag == "a" and a.get("href", "").startswith("http")):
            self.links.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "h2":
            self.h2.append(data)
        self.text.append(data)


def _project(tmp_path: Path):
    project = make_project(tmp_path, [(10, OUT_W, OUT_H, 16), (8, OUT_W, OUT_H, 16), None,
                                      (6, 160, 96, 16)])
    project.characters.append(Character(id="ava", name="Ava"))
    for shot in project.shots:
        shot.character_id = "ava"
    save_project(project, tmp_path)
    emb_a = list(np.r_[np.ones(4), np.zeros(4)] / 2)
    emb_b = list(np.ones(8) / np.sqrt(8))
    write_analysis(tmp_path, project.shots[0].active_take,
                   identity=[0.9] * 5 + [0.3, 0.2, None, 0.4, 0.9],
                   drift_ranges=[{"start": 5, "end": 8, "reasons": ["identity"]}], embedding=emb_a,
                   project=project)
    write_analysis(tmp_path, project.shots[1].active_take, identity=[0.8] * 8, embedding=emb_b,
                   project=project)
    return project


def test_report_contains_every_shot_and_is_self_contained(tmp_path: Path) -> None:
    project = _project(tmp_path)
    plan = plan_export(project, tmp_path, ExportOptions())
    out = write_report(project, tmp_path, plan, tmp_path / "exports" / "report.html",
                       film_name="film.mp4")
    parser = _Collect()
    parser.feed(out.read_text("utf-8"))
    parser.close()
    for shot in project.shots:
        assert any(shot.title in h for h in parser.h2), shot.title
        assert f"shot-{shot.id}" in parser.sections
    text = " ".join(parser.text)
    assert "Skipped" in text and "not analysed" in text  # shot 3 skipped, shot 4 not analysed
    assert not parser.links  # no external resources
    assert parser.imgs and all(i["src"].startswith("data:image/jpeg;base64,") for i in parser.imgs)
    # Images decode; contact sheets for 3 takes (8 + 8 + 6 frames) + worst frames of 2 analyses.
    for img in parser.imgs:
        Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1]))).verify()
    contact = [i for i in parser.imgs if i.get("alt", "").startswith("frame ")]
    worst = [i for i in parser.imgs if i.get("alt", "").startswith("worst frame")]
    assert len(contact) == 8 + 8 + 6 and len(worst) == 3 + 3
    # Identity plots for the analysed shots; the frame without a face splits the line in two.
    # Each analysed shot also has its state strip under the plot.
    assert parser.svg_classes == ["plot", "states"] * 2
    assert parser.polylines == 3 and parser.drift_rects == 1
    # Seeds and sidecar parameters are shown.
    assert "prompt 0" in text and "steps" in text
    # One matrix for Ava: 3 takes in the cut; two analysed with the same engine.
    assert parser.matrix_tables == 1
    assert "0.707" in text  # cosine of the two stored embeddings
    assert "(not analysed)" in text


def test_matrix_never_mixes_engines(tmp_path: Path) -> None:
    project = _project(tmp_path)
    write_analysis(tmp_path, project.shots[1].active_take, identity=[0.8] * 8, engine="arcface",
                   embedding=list(np.ones(8) / np.sqrt(8)))
    html = build_report(project, tmp_path, plan_export(project, tmp_path))
    assert "0.707" not in html and "(other engine)" in html


def test_heatmap_overlay_marks_the_hot_region() -> None:
    rgb = np.full((96, 160, 3), 100, np.uint8)
    heat = np.zeros((12, 20), np.uint8)
    heat[:6, :10] = 255
    out = overlay_heatmap(rgb, heat, np.array([100, 50, 150, 90], np.float32))
    assert out.shape == rgb.shape
    assert np.abs(out[10, 10].astype(int) - 100).max() > 60  # hot: strongly tinted
    assert np.array_equal(out[70, 20], rgb[70, 20])  # cold and outside the box: untouched
    assert tuple(out[50, 120]) == (0, 255, 120)  # the face box outline


def test_matrix_uses_the_identity_engines_calibrated_similarity(tmp_path: Path) -> None:
    from studio.identity.engines import get_engine

    engine = get_engine("dlib")
    project = _project(tmp_path)
    a = np.zeros(128, np.float32)
    a[0] = 1.0
    b = np.zeros(128, np.float32)
    b[0], b[1] = 0.8, 0.6  # Euclidean distance 0.632 from a
    for shot, emb in ((project.shots[0], a), (project.shots[1], b)):
        write_analysis(tmp_path, shot.active_take, identity=[0.8] * shot.active_take.frames,
                       engine_info=engine.info(), embedding=emb.tolist(), project=project)
    html = build_report(project, tmp_path, plan_export(project, tmp_path))
    expected = engine.similarity(a, b)
    assert 0.0 < expected < 1.0
    assert f"{expected:.3f}" in html and "dlib similarity" in html


def test_an_unreadable_analysis_is_named_not_fatal(tmp_path: Path) -> None:
    project = _project(tmp_path)
    jpath = tmp_path / "analysis" / f"{project.shots[1].active_take.id}.json"
    jpath.write_text('{"format": 2, "engine": "dlib"}')
    html = build_report(project, tmp_path, plan_export(project, tmp_path))
    assert f"not analysed: {jpath}" in html and "invalid analysis" in html
    assert "(unreadable)" in html  # the matrix says so too


class _Bands(HTMLParser):
    """The score band (name and colour) of each shot section's identity mean."""

    def __init__(self) -> None:
        super().__init__()
        self.section = ""
        self.bands: dict[str, tuple[str, str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.section = a.get("id", "")
        elif tag == "span" and a.get("class") == "band" and self.section:
            self.bands.setdefault(self.section, (a["data-band"],
                                                 a["style"].split("background:")[1]))


def test_report_and_app_badges_use_the_same_colours(tmp_path: Path) -> None:
    """Match, close and drift: the HTML report's colour for a take is the app's badge colour.
    The wrong person (identity 0.43 under the threshold 0.5, every frame flagged) is red in
    both, never amber or green."""
    from studio.core.document import ProjectDocument
    from studio.identity import colours
    from studio.ui.viewer.badges import take_badge

    project = make_project(tmp_path, [(6, 160, 96, 16)] * 4)
    engine = {"name": "dlib", "model": "m", "version": "1", "license": "CC0", "threshold": 0.5}
    cases = {"s0": ([0.9] * 6, "match"), "s1": ([0.55] * 6, "close"),
             "s2": ([0.43] * 6, "drift"),  # the wrong person
             "s3": ([0.9, 0.9, 0.45, 0.45, 0.45, 0.45], "drift")}  # passing mean, most flagged
    for shot in project.shots:
        write_analysis(tmp_path, shot.active_take, identity=cases[shot.id][0],
                       engine_info=engine)
    parser = _Bands()
    parser.feed(build_report(project, tmp_path, plan_export(project, tmp_path)))
    doc = ProjectDocument(project, tmp_path)
    for shot in project.shots:
        badge = take_badge(doc, shot.active_take)
        level, colour = parser.bands[f"shot-{shot.id}"]
        assert level == badge.level == cases[shot.id][1], shot.id
        assert colour == badge.color.name() == colours.BAND_COLOURS[level], shot.id


def test_report_shows_a_held_start_image(tmp_path: Path, photo_png: Path) -> None:
    from studio.media.images import import_image

    project = make_project(tmp_path, [(6, 160, 96, 16), None])
    asset = import_image(tmp_path, photo_png)
    project.assets[asset.sha256] = asset
    project.shots[1].start_asset = asset.path
    save_project(project, tmp_path)
    plan = plan_export(project, tmp_path, ExportOptions(missing="still"))
    parser = _Collect()
    parser.feed(build_report(project, tmp_path, plan))
    assert [i["alt"] for i in parser.imgs].count("start image") == 1
    assert "start image held for 1 s" in " ".join(parser.text)
