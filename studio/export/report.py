"""The drift report: one self-contained HTML file per export.

Per shot: the take used (or why the shot was skipped / held as a still), its generation
parameters and seed (from the take's sidecar JSON), the identity summary from
its analysis record (:mod:`studio.identity.record`: the take's band by :meth:`AnalysisRecord.band`,
the frames per state, the share that could not be judged, the false alarms the calibration
expects, FaceSim-Arc when an ArcFace pack scored it) — for a shot with several characters one
row per character (the record's ``cast`` block) —, an identity-over-time plot (inline SVG) with
the state strip under it (every frame in its state's colour: match, close, drift, uncertain), a
contact sheet of frames, and the worst frames with the record's deviation heatmap overlaid. At
the top, per character, the cross-shot identity matrix between the takes in the cut
(:func:`studio.identity.api.character_matrix`). Scores and heatmaps use the one colour scale of
:mod:`studio.identity.colours`, the same as the app's badges.

Everything is inline (CSS, SVG, JPEG data URIs): the file can be mailed or opened offline.
Shots without analysis say "not analysed" (or why their analysis cannot be read); nothing here
fails because analysis is missing.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.atomic import atomic_write_text
from studio.core.errors import StudioError
from studio.core.model import Project, Take
from studio.core.persistence import resolve_inside
from studio.identity import colours

if TYPE_CHECKING:
    import numpy as np

    from studio.identity.record import AnalysisRecord

    from studio.export.plan import ExportPlan, PlanItem

CONTACT_FRAMES = 8
CONTACT_WIDTH = 192
WORST_FRAMES = 3
WORST_WIDTH = 360
MAX_SIDECAR_ROWS = 40
HEAT_OPACITY = 0.8


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, nd: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{nd}f}"
    return str(value)


# -- data loading ------------------------------------------------------------------------------

def load_analysis(folder: Path, take_id: str) -> tuple[AnalysisRecord | None, str | None]:
    """The analysis record of a take with its arrays, and why it cannot be read when it
    cannot (None, None when the take is not analysed)."""
    from studio.core.errors import AssetError
    from studio.identity.record import read_record

    try:
        return read_record(folder, take_id, arrays=True), None
    except AssetError as exc:
        return None, str(exc)


# A take's sidecar holds its generation parameters: small, shallow JSON written by the app.
# Anything beyond these is not a sidecar we wrote, and is set aside rather than parsed.
SIDECAR_MAX_BYTES = 1 << 20
SIDECAR_MAX_DEPTH = 32


def read_sidecar(folder: Path, take: Take) -> tuple[dict[str, Any] | None, str | None]:
    """A take's sidecar and, when it cannot be used, the one line saying why (file named). Only
    a regular file inside the project, at most :data:`SIDECAR_MAX_BYTES`, nested at most
    :data:`SIDECAR_MAX_DEPTH` levels (no RecursionError, no FIFO hang): never fatal for export.
    ``(None, None)`` when the take has no sidecar."""
    from studio.core.safeio import read_json_object

    if not take.sidecar:
        return None, None
    try:
        path = resolve_inside(folder, take.sidecar)
        return read_json_object(path, SIDECAR_MAX_BYTES, SIDECAR_MAX_DEPTH), None
    except StudioError as exc:
        return None, f"take {take.id}'s sidecar is set aside: {exc}"


def load_sidecar(folder: Path, take: Take) -> dict[str, Any] | None:
    """The sidecar, or None when there is none or it cannot be used (see :func:`read_sidecar`)."""
    return read_sidecar(folder, take)[0]


def sidecar_problems(project: Project, folder: Path, plan: "ExportPlan") -> list[str]:
    """One line per sidecar of a take in the cut that the report sets aside."""
    problems = []
    for it in plan.included:
        if it.take is not None:
            problem = read_sidecar(folder, it.take)[1]
            if problem is not None:
                problems.append(problem)
    return problems


def _flatten(data: dict[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and depth < 2:
            rows.extend(_flatten(v, key + ".", depth + 1))
        elif isinstance(v, (list, dict)):
            text = json.dumps(v)
            rows.append((key, text if len(text) <= 200 else text[:197] + "…"))
        else:
            rows.append((key, v))
    return rows


# -- images ------------------------------------------------------------------------------------

def _grab_frames(path: Path, indices: set[int]) -> dict[int, "np.ndarray"]:
    """Decode ``path`` once, keeping the RGB frames at ``indices``; a damaged tail just yields
    fewer frames (the report shows what there is)."""
    import av

    out: dict[int, Any] = {}
    if not indices:
        return out
    last = max(indices)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i in indices:
                    out[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
    except (av.error.FFmpegError, OSError):
        pass
    return out


def _jpeg_uri(rgb: "np.ndarray", width: int, quality: int = 80) -> str:
    from PIL import Image

    img = Image.fromarray(rgb)
    if img.width > width:
        img = img.resize((width, max(1, round(img.height * width / img.width))),
                         Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def overlay_heatmap(rgb: "np.ndarray", heat: "np.ndarray", box: "np.ndarray | None" = None
                    ) -> "np.ndarray":
    """Blend a (ceil(H/8), ceil(W/8)) uint8 heatmap over an RGB frame in the one heatmap colour
    map (:func:`studio.identity.colours.blend_heatmap`: opacity grows with the deviation) and
    outline the face box when there is one."""
    import numpy as np

    h, w = rgb.shape[:2]
    big = np.repeat(np.repeat(heat, 8, axis=0), 8, axis=1)[:h, :w]
    if big.shape != (h, w):  # heatmap smaller than expected: pad with "no deviation"
        pad = np.zeros((h, w), np.uint8)
        pad[:big.shape[0], :big.shape[1]] = big
        big = pad
    out = colours.blend_heatmap(rgb, big, HEAT_OPACITY)
    if box is not None and np.all(np.isfinite(box)):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x0, x1 = max(0, min(w - 1, x0)), max(0, min(w - 1, x1))
        y0, y1 = max(0, min(h - 1, y0)), max(0, min(h - 1, y1))
        t = max(1, min(h, w) // 160)
        for sl in ((slice(y0, y0 + t), slice(x0, x1 + 1)), (slice(y1 - t + 1, y1 + 1), slice(x0, x1 + 1)),
                   (slice(y0, y1 + 1), slice(x0, x0 + t)), (slice(y0, y1 + 1), slice(x1 - t + 1, x1 + 1))):
            out[sl] = (0, 255, 120)
    return out


# -- SVG plot ----------------------------------------------------------------------------------

PAD_L, PAD_R = 34, 8  # the plot's and the state strip's horizontal padding: frames line up


def state_runs(states: list[str]) -> list[tuple[int, int, str]]:
    """Consecutive frames of one state as (first, last, state), inclusive."""
    out: list[tuple[int, int, str]] = []
    start = 0
    for i in range(1, len(states) + 1):
        if i == len(states) or states[i] != states[start]:
            out.append((start, i - 1, states[start]))
            start = i
    return out


def identity_svg(identity: "np.ndarray", drift_ranges: list[tuple[int, int, list[str]]],
                 threshold: float | None, n_frames: int, width: int = 640, height: int = 150,
                 uncertain: list[tuple[int, int]] | None = None) -> str:
    """Identity (0..1, NaN = no face) over frame index: drift ranges shaded in the drift colour,
    frames that could not be judged (``uncertain`` runs) in the uncertain colour, threshold
    dashed, frames without a score left as gaps."""
    import math

    drift = colours.BAND_COLOURS["drift"]
    violet = colours.STATE_COLOURS["uncertain"]
    pad_l, pad_r, pad_t, pad_b = PAD_L, PAD_R, 8, 20
    pw, ph = width - pad_l - pad_r, height - pad_t - pad_b
    n = max(1, n_frames - 1)

    def x(i: float) -> float:
        return pad_l + pw * i / n

    def y(v: float) -> float:
        return pad_t + ph * (1.0 - max(0.0, min(1.0, v)))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="identity over time">',
             f'<rect x="{pad_l}" y="{pad_t}" width="{pw}" height="{ph}" fill="#fafafa" '
             'stroke="#ccc"/>']
    for s, e, reasons in drift_ranges:
        x0, x1 = x(s - 0.5 if s > 0 else 0), x(min(n, e + 0.5))
        parts.append(f'<rect class="drift" x="{x0:.1f}" y="{pad_t}" width="{max(1.0, x1 - x0):.1f}" '
                     f'height="{ph}" fill="{drift}" fill-opacity="0.18"><title>drift {s}–{e}: '
                     f'{_e(", ".join(reasons))}</title></rect>')
    for s, e in uncertain or []:
        x0, x1 = x(s - 0.5 if s > 0 else 0), x(min(n, e + 0.5))
        parts.append(f'<rect class="uncertain" x="{x0:.1f}" y="{pad_t}" '
                     f'width="{max(1.0, x1 - x0):.1f}" height="{ph}" fill="{violet}" '
                     f'fill-opacity="0.22"><title>uncertain {s}–{e}: not judged</title></rect>')
    for v in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{pad_l - 4}" y="{y(v) + 4:.1f}" text-anchor="end" '
                     f'font-size="10" fill="#666">{v:.1f}</text>')
    if threshold is not None and 0 <= threshold <= 1:
        parts.append(f'<line x1="{pad_l}" x2="{pad_l + pw}" y1="{y(threshold):.1f}" '
                     f'y2="{y(threshold):.1f}" stroke="{drift}" stroke-dasharray="4 3"/>')
    segments: list[list[str]] = [[]]
    for i, v in enumerate(identity.tolist()):
        if math.isfinite(v):
            segments[-1].append(f"{x(i):.1f},{y(float(v)):.1f}")
        elif segments[-1]:
            segments.append([])
    for seg in segments:
        if len(seg) == 1:
            cx, cy = seg[0].split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="#2a6fdb"/>')
        elif seg:
            parts.append(f'<polyline class="identity" fill="none" stroke="#2a6fdb" '
                         f'stroke-width="1.5" points="{" ".join(seg)}"/>')
    parts.append(f'<text x="{pad_l}" y="{height - 5}" font-size="10" fill="#666">frame 0</text>'
                 f'<text x="{pad_l + pw}" y="{height - 5}" font-size="10" fill="#666" '
                 f'text-anchor="end">{n_frames - 1}</text></svg>')
    return "".join(parts)


def state_strip_svg(states: list[str], notes: list[str], width: int = 640, height: int = 14
                    ) -> str:
    """Every frame in its state's colour (:data:`studio.identity.colours.STATE_COLOURS`), runs
    of one state as one rectangle with its frames and why in a tooltip, on the identity plot's
    x axis."""
    n = len(states)
    pw = width - PAD_L - PAD_R
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="states" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="frame states">']
    for s, e, st in state_runs(states):
        # Each frame owns 1/n of the width (the plot puts frame i at its centre).
        x0 = PAD_L + pw * s / max(1, n)
        w = max(0.5, pw * (e - s + 1) / max(1, n))
        why = sorted({notes[i] for i in range(s, e + 1) if i < len(notes) and notes[i]})
        title = (f"frames {s}–{e}: " if s != e else f"frame {s}: ") + (
            " / ".join(why[:3]) + (" / …" if len(why) > 3 else "") if why else st)
        parts.append(f'<rect class="state" data-state="{st}" data-start="{s}" data-end="{e}" '
                     f'x="{x0:.2f}" y="1" width="{w:.2f}" height="{height - 2}" '
                     f'fill="{colours.STATE_COLOURS.get(st, colours.NONE_COLOUR)}">'
                     f"<title>{_e(title)}</title></rect>")
    parts.append("</svg>")
    return "".join(parts)


def _states_html(counts: dict[str, int]) -> str:
    """The legend of the state strip: each state's colour, name and frame count."""
    return " ".join(
        f'<span class="state-key" data-state="{st}"><span class="band" data-band="{st}" '
        f'style="background:{colours.STATE_COLOURS[st]}"></span>{_e(st)} {counts.get(st, 0)}'
        "</span>" for st in colours.BANDS)


# -- identity matrix ---------------------------------------------------------------------------

def character_matrices(project: Project, folder: Path, plan: "ExportPlan") -> list[dict[str, Any]]:
    """Per character, the identity matrix between the takes of its shots in the cut
    (:func:`studio.identity.api.character_matrix`: one engine only, calibrated when known)."""
    from studio.identity.api import character_matrix

    out: list[dict[str, Any]] = []
    for char in project.characters:
        takes = []
        for it in plan.included:
            shot = project.shot(it.shot_id)
            if shot is not None and shot.character_id == char.id and it.take is not None:
                takes.append((shot, it.take))
        if takes:
            m = character_matrix(folder, project, char.id, takes=takes)
            out.append({**m, "color": char.color})
    return out


# -- HTML --------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:14px 0 4px}table{border-collapse:collapse;margin:4px 0}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.muted{color:#777}.bad{color:#b00}.ok{color:#070}
.sheet img,.worst img{margin:2px;border:1px solid #ccc}.worst figure{display:inline-block;margin:4px}
figcaption{font-size:12px;color:#555}.matrix td{text-align:center;min-width:48px}
.tag{display:inline-block;padding:0 6px;border-radius:8px;background:#eee;font-size:12px}
section.shot{page-break-inside:avoid}
.band{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:5px;
vertical-align:baseline}
.state-key{margin-right:12px;white-space:nowrap}svg.states{display:block;margin:0 0 2px}
"""


def _band_dot(level: str | None) -> str:
    """The coloured dot of a score band (the colours of the app's identity badges)."""
    name = level or "none"
    return (f'<span class="band" data-band="{name}" '
            f'style="background:{colours.band_colour(level)}"></span>')


def _matrix_html(m: dict[str, Any]) -> str:
    cols = m["takes"]
    threshold = m.get("threshold")
    info = m.get("engine")
    engine = (info.get("name") if isinstance(info, dict) else None) or \
        (str(m.get("engine_key") or "").split("/")[0] or None)
    head = "".join(f"<th>{_e(c['shot'])}</th>" for c in cols)
    rows = []
    for i, c in enumerate(cols):
        cells = []
        for j in range(len(cols)):
            v = m["matrix"][i][j]
            if v is None:
                cells.append('<td class="muted">–</td>')
            elif threshold is not None:  # calibrated: the score bands, lightly tinted
                level = colours.band(v, threshold, engine)
                cells.append(f'<td data-band="{level}" style="background:'
                             f'{colours.band_colour(level)}40">{v:.3f}</td>')
            else:  # cosine similarity has no threshold: no band to show
                cells.append(f"<td>{v:.3f}</td>")
        status = "" if c["status"] == "ok" else f' <span class="muted">({_e(c["status"])})</span>'
        rows.append(f"<tr><th>{_e(c['shot'])}{status}</th>{''.join(cells)}</tr>")
    return (f"<h3>{_e(m['character'])}</h3><p class='muted'>{_e(m['measure'])}; engine "
            f"{_e(m['engine_key'] or 'none')}</p><table class='matrix'><tr><th></th>{head}</tr>"
            f"{''.join(rows)}</table>")


def _cast_html(analysis: AnalysisRecord, project: Project, fps: float) -> str:
    """Per character of a multi-character shot: its identity (from the faces the best
    assignment gave it on the sampled frames), flagged share and drift ranges."""
    thr, engine = analysis.engine.threshold, analysis.engine.name
    rows = []
    for c in analysis.cast:
        char = project.character(c.character_id)
        name = char.name if char is not None else c.character_id
        if c.problem is not None:
            rows.append(f"<tr><th>{_e(name)}</th><td colspan=5 class=muted>not scored: "
                        f"{_e(c.problem)}</td></tr>")
            continue
        level = colours.take_band(c.identity_mean, thr, c.flagged_fraction or 0.0,
                                  engine=engine)
        ranges = ", ".join(f"{r.start}–{r.end} ({_fmt(r.start / fps, 2)}–{_fmt(r.end / fps, 2)}"
                           f" s: {', '.join(r.reasons)})" for r in c.drift_ranges) or "none"
        rows.append(f"<tr data-character='{_e(c.character_id)}'><th>{_e(name)}</th>"
                    f"<td>{_band_dot(level)}{_e(_fmt(c.identity_mean))}</td>"
                    f"<td>{_e(_fmt(c.identity_min))}</td>"
                    f"<td>{_e(f'{100 * (c.flagged_fraction or 0.0):.1f} %')}</td>"
                    f"<td>{_e(f'{c.face_frames} of {c.sampled_frames}')}</td>"
                    f"<td>{_e(ranges)}</td></tr>")
    return ("<h3>Characters</h3><table class=\"cast\"><tr><th>character</th><th>identity mean"
            "</th><th>identity min</th><th>flagged</th><th>face found (sampled frames)</th>"
            "<th>drift ranges</th></tr>" + "".join(rows) + "</table>")


def _frame_note(state: str, reasons: list[str], cautions: list[str]) -> str:
    why = reasons if state == "drift" else cautions
    return f"{state}: {'; '.join(why)}" if why else state


def _uncertain_text(s: Any, frames: int) -> str:
    n = s.states.uncertain
    if not n:
        return "none"
    return (f"{n} of {frames} frames ({100 * s.uncertain_fraction:.1f} %): the face fit was not "
            "trusted, nothing is claimed there")


def _false_alarm_text(rate: float | None, frames: int) -> str:
    if rate is None:
        return "not calibrated for this engine or face size"
    return (f"{100 * rate:.1f} % of frames (≈ {rate * frames:.1f} of {frames}) would be flagged "
            "on an unchanged face of this size")


def _shot_html(index: int, it: "PlanItem", project: Project, folder: Path,
               analysis: AnalysisRecord | None, problem: str | None = None) -> str:
    shot = project.shot(it.shot_id)
    out = [f'<section class="shot" id="shot-{_e(it.shot_id)}">'
           f"<h2>{index}. {_e(it.shot_title)}</h2>"]
    if it.kind == "skip":
        out.append(f'<p class="bad">Skipped: {_e(it.note or "no take")}</p></section>')
        return "".join(out)
    if it.actions:
        out.append(f"<p>{''.join(f'<span class=tag>{_e(a)}</span> ' for a in it.actions)}</p>")
    if shot is not None and shot.prompt:
        out.append(f"<p><b>Prompt:</b> {_e(shot.prompt)}</p>")
    if it.kind == "still":
        out.append(f'<p class="muted">{_e(it.note)}</p>')
        if it.path is not None:
            try:
                from studio.media.images import load_rgb

                out.append(f'<div class="sheet"><img alt="start image" '
                           f'src="{_jpeg_uri(load_rgb(it.path, max_side=640), WORST_WIDTH)}"></div>')
            except StudioError as exc:
                out.append(f'<p class="bad">{_e(exc)}</p>')
        out.append("<p class='muted'>not analysed</p></section>")
        return "".join(out)
    take, src = it.take, it.source
    assert take is not None and src is not None and it.path is not None
    info = [("take", take.id), ("file", take.video), ("backend", take.backend),
            ("model", take.model or "–"), ("seed", take.seed),
            ("size", f"{src.width}×{src.height}"), ("fps", f"{float(src.fps):g}"),
            ("frames", src.frames), ("draft", "yes" if take.draft else "no")]
    if take.created_at:
        info.append(("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(take.created_at))))
    out.append("<h3>Take</h3><table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                                                  for k, v in info) + "</table>")
    sidecar, side_problem = read_sidecar(folder, take)
    if side_problem is not None:
        out.append(f'<p class="bad">{_e(side_problem)}</p>')
    elif sidecar:
        rows = _flatten(sidecar)
        more = len(rows) - MAX_SIDECAR_ROWS
        body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(v, 4))}</td></tr>"
                       for k, v in rows[:MAX_SIDECAR_ROWS])
        if more > 0:
            body += f"<tr><td colspan=2 class=muted>… {more} more in {_e(take.sidecar)}</td></tr>"
        # Folded: the take table above has what a reviewer needs; this is for reproducing it.
        out.append(f"<details><summary><b>All parameters</b> (from the take's sidecar)</summary>"
                   f"<table class='params'>{body}</table></details>")
    else:
        out.append("<p class='muted'>No sidecar with generation parameters.</p>")

    worst: list[int] = []
    if analysis is None:
        why = f": {problem}" if problem else ""
        out.append(f'<h3>Identity</h3><p class="muted">not analysed{_e(why)}</p>')
    else:
        s, eng = analysis.summary, analysis.engine
        fps = float(src.fps)
        rng_text = ", ".join(
            f"{r.start}–{r.end} ({_fmt(r.start / fps, 2)}–{_fmt(r.end / fps, 2)} s: "
            f"{', '.join(r.reasons)})" for r in s.drift_ranges)
        # The app's badge asks the record the same question (studio.ui.viewer.badges).
        level = analysis.band()
        words = colours.BAND_WORDS[level] if level else "no face measured"
        counts = s.states.model_dump()
        n_frames = max(1, analysis.frame_count)
        rows = [("engine", _e(f"{eng.name} {eng.model} {eng.version}")),
                ("identity mean", f'<span class="score">{_band_dot(level)}'
                                  f"{_e(_fmt(s.identity_mean))}</span> <span class=muted>"
                                  f"({_e(words)}; threshold {eng.threshold:g})</span>"),
                ("identity min", _e(_fmt(s.identity_min))),
                ("frame states", _e(" · ".join(f"{st} {counts[st]}" for st in colours.BANDS))),
                ("flagged frames", _e(f"{100 * s.flagged_fraction:.1f} % ({counts['drift']} "
                                      "frames in the drift state)")),
                ("uncertain frames", f'<span class="uncertain">{_e(_uncertain_text(s, n_frames))}'
                                     "</span>"),
                ("expected false alarms", _e(_false_alarm_text(s.expected_false_alarm,
                                                              n_frames)))]
        if s.facesim_arc is not None:
            rows.append(("FaceSim-Arc", f'<span class="facesim">{_e(_fmt(s.facesim_arc))}</span>'
                                        " <span class=muted>(mean ArcFace cosine to the "
                                        "reference, as in OpenS2V)</span>"))
        rows += [("drift ranges", _e(rng_text or "none")),
                 ("motion", _e(_fmt(s.motion)))]
        if shot is not None:
            stale = analysis.stale_reasons(project, shot, None)
            if stale:
                rows.append(("stale", f"<span class=bad>{_e('; '.join(stale))}</span>"))
        out.append("<h3>Identity</h3><table class='identity'>"
                   + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
                   + "</table>")
        if analysis.cast:
            out.append(_cast_html(analysis, project, fps))
        states = analysis.states()
        notes = [_frame_note(f.state, list(f.reasons), list(f.cautions))
                 for f in analysis.frames]
        out.append(identity_svg(analysis.metric("identity"),
                                [(r.start, r.end, list(r.reasons)) for r in s.drift_ranges],
                                eng.threshold, src.frames,
                                uncertain=[(a, b) for a, b, st in state_runs(states)
                                           if st == "uncertain"]))
        out.append(state_strip_svg(states, notes))
        out.append(f'<p class="legend">{_states_html(counts)}</p>')
        # Worst frames to look at: not the ones that could not be judged (they have no
        # heatmap and no score; the state strip shows where they are).
        worst = [i for i in s.worst_frames if i < src.frames
                 and analysis.frames[i].state != "uncertain"][:WORST_FRAMES]

    n = src.frames
    contact = sorted({round(k * (n - 1) / max(1, CONTACT_FRAMES - 1)) for k in range(CONTACT_FRAMES)}
                     if n > 1 else {0})
    grabbed = _grab_frames(it.path, set(contact) | set(worst))
    out.append("<h3>Contact sheet</h3><div class='sheet'>")
    fps = float(src.fps)
    for i in contact:
        if i in grabbed:
            out.append(f'<img alt="frame {i}" title="frame {i} ({i / fps:.2f} s)" '
                       f'src="{_jpeg_uri(grabbed[i], CONTACT_WIDTH)}">')
    out.append("</div>")
    if worst and analysis is not None:
        arrays = analysis.arrays
        out.append("<h3>Worst frames</h3><div class='worst'>")
        for i in worst:
            if i not in grabbed:
                continue
            img = grabbed[i]
            if arrays is not None and i < len(arrays.heatmaps):
                img = overlay_heatmap(img, arrays.heatmaps[i], arrays.boxes[i])
            fr = analysis.frames[i]
            why = fr.reasons if fr.state == "drift" else fr.cautions
            out.append(f'<figure data-state="{fr.state}"><img alt="worst frame {i}" '
                       f'src="{_jpeg_uri(img, WORST_WIDTH)}"><figcaption>'
                       f'<span class="band" data-band="{fr.state}" style="background:'
                       f'{colours.STATE_COLOURS[fr.state]}"></span>frame {i} ({i / fps:.2f} s) · '
                       f"{_e(fr.state)} · identity {_e(_fmt(fr.identity))}"
                       f"{' · ' + _e(', '.join(why)) if why else ''}"
                       "</figcaption></figure>")
        out.append("</div>")
    out.append("</section>")
    return "".join(out)


def build_report(project: Project, folder: Path, plan: "ExportPlan", *,
                 film_name: str | None = None) -> str:
    """The report as an HTML string."""
    folder = Path(folder)
    analyses: dict[str, tuple[AnalysisRecord | None, str | None]] = {}
    for it in plan.included:
        if it.take is not None:
            analyses[it.take.id] = load_analysis(folder, it.take.id)
    analysed = sum(1 for a, _ in analyses.values() if a is not None)
    head = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Drift report – {_e(project.name)}</title><style>{_CSS}</style></head><body>")
    summary = [("film", film_name or "–"),
               ("exported", time.strftime("%Y-%m-%d %H:%M:%S")),
               ("output", f"{plan.width}×{plan.height} @ {plan.fps} fps, {plan.total_frames} frames "
                          f"({plan.duration_s:.2f} s)"),
               ("assembly", "joined without re-encoding" if plan.mode == "copy"
                            else "re-encoded" + (f" ({'; '.join(plan.reasons[:4])})" if plan.reasons else "")),
               ("crossfade", f"{plan.options.crossfade} frames" if plan.options.crossfade else "none"),
               ("shots", f"{len(plan.included)} in the cut, {len(plan.skipped)} skipped, "
                         f"{analysed} analysed")]
    body = [f"<h1>Drift report: {_e(project.name)}</h1>",
            "<table class='summary'>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                                                 for k, v in summary) + "</table>"]
    if plan.skipped:
        body.append("<p class='bad'>Skipped: " + ", ".join(
            f"{_e(it.shot_title)} ({_e(it.note)})" for it in plan.skipped) + "</p>")
    matrices = character_matrices(project, folder, plan)
    body.append("<h2>Cross-shot identity</h2>")
    if matrices:
        body.extend(_matrix_html(m) for m in matrices)
    else:
        body.append("<p class='muted'>No shot in the cut is assigned to a character.</p>")
    for i, it in enumerate(plan.items, 1):
        analysis, problem = (analyses.get(it.take.id, (None, None)) if it.take is not None
                             else (None, None))
        body.append(_shot_html(i, it, project, folder, analysis, problem))
    body.append("<p class='muted'>Generated by Continuity Studio.</p></body></html>")
    return head + "".join(body)


def write_report(project: Project, folder: Path, plan: "ExportPlan", out_path: Path, *,
                 film_name: str | None = None) -> Path:
    out_path = Path(out_path).absolute()
    text = build_report(project, folder, plan, film_name=film_name)
    try:
        atomic_write_text(out_path, text)
    except OSError as exc:
        from studio.export.film import output_error

        raise output_error(exc, out_path) from None
    return out_path
