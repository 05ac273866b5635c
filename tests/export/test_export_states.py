"""Format-4 frame states in the exports and the CLI: the drift report's state strip, legend,
uncertain count, expected false alarms and FaceSim-Arc; worst frames that can be looked at;
OTIO markers for drift ranges only; the `analyze` command's text summary (from kit records and
from a real analysis of a real video)."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

from export_testkit import UNSTABLE, make_project, write_analysis

from studio.core.persistence import save_project
from studio.export.interchange import build_timeline
from studio.export.plan import plan_export
from studio.export.report import build_report
from studio.identity import colours
from studio.identity.record import parse_record, read_record

DLIB = {"name": "dlib", "model": "m", "version": "1", "license": "CC0", "threshold": 0.5}
N = 12
# frames 0-3 match, 4-6 uncertain, 7-9 drift (another person), 10-11 close
STATES = ["match"] * 4 + ["uncertain"] * 3 + ["drift"] * 3 + ["close"] * 2
IDENTITY = [0.9] * 4 + [0.0] * 3 + [0.4, 0.38, 0.41] + [0.55] * 2  # uncertain: no score


class _Parse(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cell = ""  # the identity table's current header
        self.rows: dict[str, str] = {}
        self.in_td = False
        self.states: list[dict[str, str]] = []
        self.keys: list[str] = []
        self.figures: list[dict[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "rect" and a.get("class") == "state":
            self.states.append(a)
        elif tag == "span" and a.get("class") == "state-key":
            self.keys.append(a["data-state"])
        elif tag == "figure":
            self.figures.append(a)
        elif tag == "td":
            self.in_td = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self.in_td = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.in_td and self.cell:
            self.rows[self.cell] = self.rows.get(self.cell, "") + data
        elif not self.in_td:
            self.cell = data.strip()


def _project(tmp_path: Path, **kw):
    project = make_project(tmp_path, [(N, 160, 96, 16)])
    take = project.shots[0].active_take
    write_analysis(tmp_path, take, identity=IDENTITY, states=STATES, engine_info=DLIB, **kw)
    save_project(project, tmp_path)
    return project, take


def test_report_strip_legend_and_the_new_summary(tmp_path: Path) -> None:
    project, take = _project(tmp_path, expected_false_alarm=0.005, facesim_arc=0.612)
    rec = read_record(tmp_path, take.id)
    assert rec is not None and rec.summary.facesim_arc == 0.612
    p = _Parse()
    p.feed(build_report(project, tmp_path, plan_export(project, tmp_path)))
    strip = [(r["data-state"], r["fill"], r["data-start"], r["data-end"]) for r in p.states]
    c = colours.STATE_COLOURS
    assert strip == [("match", c["match"], "0", "3"), ("uncertain", c["uncertain"], "4", "6"),
                     ("drift", c["drift"], "7", "9"), ("close", c["close"], "10", "11")]
    assert p.keys == list(colours.BANDS)  # the legend: all four states, in order
    assert f"frames 4–6: uncertain: {UNSTABLE}" in p.text  # the run's tooltip
    assert p.rows["frame states"] == "match 4 · close 2 · drift 3 · uncertain 3"
    assert p.rows["uncertain frames"].startswith("3 of 12 frames (25.0 %)")
    assert p.rows["expected false alarms"].startswith("0.5 % of frames (≈ 0.1 of 12)")
    assert p.rows["FaceSim-Arc"].startswith("0.612")
    assert p.rows["flagged frames"].startswith("25.0 %")
    # The take's band is the record's (mean of the scored frames 0.66, 25 % flagged: close).
    assert rec.band() == "close" and f"({colours.BAND_WORDS['close']};" in p.rows["identity mean"]
    # Worst frames are frames to look at: the uncertain ones (no score, no heatmap) are left
    # out even where the record lists them, and each caption names its state.
    assert p.figures and all(f["data-state"] != "uncertain" for f in p.figures)
    assert {f["data-state"] for f in p.figures} <= {"drift", "close", "match"}


def test_report_without_facesim_or_calibration_says_so(tmp_path: Path) -> None:
    project, _ = _project(tmp_path)
    p = _Parse()
    p.feed(build_report(project, tmp_path, plan_export(project, tmp_path)))
    assert "FaceSim-Arc" not in p.rows
    assert p.rows["expected false alarms"] == "not calibrated for this engine or face size"


def test_otio_marks_drift_ranges_only(tmp_path: Path) -> None:
    project, take = _project(tmp_path)
    timeline = build_timeline(project, tmp_path, plan_export(project, tmp_path))
    clip = next(iter(timeline.find_clips()))
    marks = [(m.marked_range.start_time.value, m.marked_range.duration.value)
             for m in clip.markers]
    assert marks == [(7, 3)]  # the drift frames 7-9; nothing for the uncertain 4-6
    meta = clip.metadata["continuity_studio"]["analysis"]
    rec = read_record(tmp_path, take.id)
    assert meta["band"] == rec.band() and meta["uncertain_fraction"] == 0.25
    assert dict(meta["states"]) == {"match": 4, "close": 2, "drift": 3, "uncertain": 3}


def test_cli_summary_lines_of_a_wrong_person_and_an_uncertain_take(tmp_path: Path) -> None:
    from studio.cli.analyze import summary_lines

    project = make_project(tmp_path, [(N, 160, 96, 16), (N, 160, 96, 16)])
    wrong, mixed = (s.active_take for s in project.shots)
    write_analysis(tmp_path, wrong, identity=[0.43] * N, states=["drift"] * N, engine_info=DLIB)
    write_analysis(tmp_path, mixed, identity=IDENTITY, states=STATES, engine_info=DLIB,
                   expected_false_alarm=0.02, facesim_arc=0.5)
    lines = summary_lines(read_record(tmp_path, wrong.id), "wrong.mp4")
    assert lines[0] == "wrong.mp4: 12 frames, engine dlib (m, threshold 0.5)"
    assert "take: drift (identity drifted)" in lines
    assert "frames: match 0, close 0, drift 12, uncertain 0" in lines
    assert "uncertain: none" in lines
    assert "expected false alarms: not calibrated for this engine or face size" in lines
    assert not any(ln.startswith("FaceSim-Arc") for ln in lines)
    lines = summary_lines(read_record(tmp_path, mixed.id), "mixed.mp4")
    assert "frames: match 4, close 2, drift 3, uncertain 3" in lines
    assert "uncertain 25% (3 of 12 frames could not be judged)" in lines
    assert "expected false alarms: 2.0% of frames (≈ 0.2 of 12) on an unchanged face of this " \
           "size" in lines
    assert "FaceSim-Arc 0.500 (mean ArcFace cosine to the reference)" in lines
    assert lines[-1] == "  frames 7-9: different person"


def test_analyze_command_prints_the_states_of_a_real_analysis(tmp_path: Path) -> None:
    """A real video (the astronaut, then another person from t1.jpg) through the real command:
    its text summary says what its JSON record says."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "identity"))
    from identity_helpers import astronaut, moving_frames, t1_faces
    from PIL import Image

    from studio.media.video import write_video

    clip = tmp_path / "clip.mp4"
    write_video(clip, moving_frames(astronaut(), 8, amplitude=0.5)
                + moving_frames(t1_faces()[0], 8, amplitude=0.5), 16)
    ref = tmp_path / "ref.png"
    Image.fromarray(astronaut()).save(ref)
    out = tmp_path / "out.json"
    r = subprocess.run([sys.executable, "-m", "studio", "analyze", str(clip), "--reference",
                        str(ref), "--json", str(out), "--engine", "dlib"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    rec = parse_record(out.read_bytes())
    data = json.loads(out.read_text())
    counts = {k: sum(f["state"] == k for f in data["frames"]) for k in colours.BANDS}
    assert counts["drift"] > 0  # the other person
    lines = r.stdout.splitlines()
    level = rec.band()
    assert (f"take: {level} ({colours.BAND_WORDS[level]})" if level
            else "take: no face measured") in lines
    assert "frames: " + ", ".join(f"{k} {counts[k]}" for k in colours.BANDS) in lines
    assert any(ln.startswith("expected false alarms: ") for ln in lines)
    for rng in rec.summary.drift_ranges:
        assert f"  frames {rng.start}-{rng.end}: {', '.join(rng.reasons)}" in lines
