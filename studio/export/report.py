"""The drift report: one self-contained HTML file per export.

Per shot: the take used (or why the shot was skipped / held as a still), its generation
parameters and seed (from the take's sidecar JSON), the identity summary from
``analysis/<take_id>.json``, an identity-over-time plot (inline SVG), a contact sheet of frames,
and the worst frames with the deviation heatmap from ``analysis/<take_id>.npz`` overlaid. At the
top, per character, the cross-shot identity matrix between the takes in the cut.

Everything is inline (CSS, SVG, JPEG data URIs): the file can be mailed or opened offline.
Shots without analysis say "not analysed"; nothing here fails because analysis is missing.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.atomic import atomic_write_text
from studio.core.errors import StudioError
from studio.core.model import Project, Take
from studio.core.persistence import resolve_inside

if TYPE_CHECKING:
    import numpy as np

    from studio.export.film import ExportPlan, PlanItem

CONTACT_FRAMES = 8
CONTACT_WIDTH = 192
WORST_FRAMES = 3
WORST_WIDTH = 360
MAX_SIDECAR_ROWS = 40


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, nd: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{nd}f}"
    return str(value)


# -- data loading ------------------------------------------------------------------------------

def load_analysis(folder: Path, take_id: str, arrays: bool = False) -> dict[str, Any] | None:
    """``analysis/<take_id>.json`` (+ the npz arrays under ``"arrays"``), or None when absent or
    unreadable."""
    import numpy as np

    base = Path(folder) / "analysis"
    try:
        data = json.loads((base / f"{take_id}.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != 1 or not isinstance(
            data.get("summary"), dict):
        return None
    if arrays:
        try:
            with np.load(base / f"{take_id}.npz") as z:
                data["arrays"] = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError):
            data["arrays"] = {}
    return data


def engine_key(analysis: dict[str, Any]) -> str:
    """Which engine produced an analysis: its ``engine_key`` or name/model/version."""
    if isinstance(analysis.get("engine_key"), str):
        return analysis["engine_key"]
    eng = analysis.get("engine") or {}
    return f"{eng.get('name', '?')}/{eng.get('model', '')}/{eng.get('version', '')}"


def load_sidecar(folder: Path, take: Take) -> dict[str, Any] | None:
    if not take.sidecar:
        return None
    try:
        data = json.loads(resolve_inside(folder, take.sidecar).read_text("utf-8"))
    except (OSError, ValueError, StudioError):
        return None
    return data if isinstance(data, dict) else None


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


def _heat_lut() -> "np.ndarray":
    """256-entry RGB colour map: transparent-ish blue → yellow → red."""
    import numpy as np

    t = np.linspace(0.0, 1.0, 256)
    r = np.clip(2.0 * t, 0, 1)
    g = np.clip(2.0 - 2.0 * t, 0, 1) * np.clip(2.0 * t, 0, 1)
    b = np.clip(1.0 - 2.0 * t, 0, 1) * 0.6
    return (np.stack([r, g, b], 1) * 255).astype(np.uint8)


def overlay_heatmap(rgb: "np.ndarray", heat: "np.ndarray", box: "np.ndarray | None" = None
                    ) -> "np.ndarray":
    """Blend a (ceil(H/8), ceil(W/8)) uint8 heatmap over an RGB frame (opacity grows with the
    deviation) and outline the face box when there is one."""
    import numpy as np

    h, w = rgb.shape[:2]
    big = np.repeat(np.repeat(heat, 8, axis=0), 8, axis=1)[:h, :w]
    if big.shape != (h, w):  # heatmap smaller than expected: pad with "no deviation"
        pad = np.zeros((h, w), np.uint8)
        pad[:big.shape[0], :big.shape[1]] = big
        big = pad
    color = _heat_lut()[big].astype(np.float32)
    alpha = (big.astype(np.float32) / 255.0 * 0.65)[..., None]
    out = rgb.astype(np.float32) * (1 - alpha) + color * alpha
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
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

def identity_svg(frames: list[dict[str, Any]], drift_ranges: list[dict[str, Any]],
                 threshold: float | None, n_frames: int, width: int = 640, height: int = 150) -> str:
    """Identity (0..1) over frame index: drift ranges shaded red, threshold dashed, frames
    without a face left as gaps."""
    pad_l, pad_r, pad_t, pad_b = 34, 8, 8, 20
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
    for rng in drift_ranges:
        try:
            s, e = int(rng["start"]), int(rng["end"])
        except (KeyError, TypeError, ValueError):
            continue
        x0, x1 = x(s - 0.5 if s > 0 else 0), x(min(n, e + 0.5))
        parts.append(f'<rect class="drift" x="{x0:.1f}" y="{pad_t}" width="{max(1.0, x1 - x0):.1f}" '
                     f'height="{ph}" fill="#f44" fill-opacity="0.18"><title>drift {s}–{e}: '
                     f'{_e(", ".join(map(str, rng.get("reasons") or [])))}</title></rect>')
    for v in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{pad_l - 4}" y="{y(v) + 4:.1f}" text-anchor="end" '
                     f'font-size="10" fill="#666">{v:.1f}</text>')
    if threshold is not None and 0 <= threshold <= 1:
        parts.append(f'<line x1="{pad_l}" x2="{pad_l + pw}" y1="{y(threshold):.1f}" '
                     f'y2="{y(threshold):.1f}" stroke="#c33" stroke-dasharray="4 3"/>')
    segments: list[list[str]] = [[]]
    for row in frames:
        v, i = row.get("identity"), row.get("index")
        if isinstance(v, (int, float)) and isinstance(i, int) and math.isfinite(v):
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


# -- identity matrix ---------------------------------------------------------------------------

def _cosine(a: list[float], b: list[float]) -> float | None:
    import numpy as np

    va, vb = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if va.shape != vb.shape or not va.size:
        return None
    na, nb = np.linalg.norm(va), np.linalg.norm(vb)
    if na == 0 or nb == 0:
        return None
    return float(va @ vb / (na * nb))


def character_matrices(project: Project, folder: Path, plan: "ExportPlan",
                       analyses: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Per character: the identity similarity between the takes of its shots in the cut.

    Only analyses of one engine are compared (the engine that analysed most of the character's
    takes); the others are marked as such. The engine's own calibrated similarity from
    :mod:`studio.identity` is used when available, else cosine similarity of the stored mean
    embeddings."""
    out: list[dict[str, Any]] = []
    for char in project.characters:
        cols: list[dict[str, Any]] = []
        for it in plan.included:
            shot = project.shot(it.shot_id)
            if shot is None or shot.character_id != char.id or it.take is None:
                continue
            a = analyses.get(it.take.id)
            emb = (a or {}).get("summary", {}).get("embedding") if a else None
            cols.append({"shot": it.shot_title, "take_id": it.take.id,
                         "engine": engine_key(a) if a else None,
                         "embedding": emb if isinstance(emb, list) and emb else None})
        if not cols:
            continue
        counts = Counter(c["engine"] for c in cols if c["embedding"] is not None)
        main = counts.most_common(1)[0][0] if counts else None
        sim = _engine_similarity(main)
        n = len(cols)
        matrix: list[list[float | None]] = [[None] * n for _ in range(n)]
        for i in range(n):
            for j in range(n):
                ci, cj = cols[i], cols[j]
                if (main is None or ci["embedding"] is None or cj["embedding"] is None
                        or ci["engine"] != main or cj["engine"] != main):
                    continue
                matrix[i][j] = sim(ci["embedding"], cj["embedding"])
        for c in cols:
            c["status"] = ("not analysed" if c["engine"] is None
                           else "no embedding" if c["embedding"] is None
                           else "other engine" if c["engine"] != main else "ok")
            del c["embedding"]
        out.append({"character": char.name, "color": char.color, "engine": main,
                    "measure": getattr(sim, "label", "cosine similarity"), "takes": cols,
                    "matrix": matrix})
    return out


def _engine_similarity(key: str | None) -> Any:
    """A similarity function for embeddings of engine ``key``: the identity package's calibrated
    [0, 1] similarity when it knows the engine, otherwise cosine similarity."""

    def cosine(a: list[float], b: list[float]) -> float | None:
        v = _cosine(a, b)
        return None if v is None else round(v, 4)

    cosine.label = "cosine similarity"  # type: ignore[attr-defined]
    if key is None:
        return cosine
    try:
        import numpy as np

        from studio.identity.engines import get_engine

        engine = get_engine(key.split("/", 1)[0])
        if engine.key != key:
            return cosine

        def calibrated(a: list[float], b: list[float]) -> float | None:
            va, vb = np.asarray(a, np.float32), np.asarray(b, np.float32)
            if va.shape != vb.shape:
                return None
            return round(float(engine.similarity(va, vb)), 4)

        calibrated.label = f"{engine.name} similarity (≥ {engine.threshold:g} = same person)"  # type: ignore[attr-defined]
        return calibrated
    except Exception:  # identity package absent or engine unavailable: plain cosine
        return cosine


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
"""


def _matrix_html(m: dict[str, Any]) -> str:
    cols = m["takes"]
    head = "".join(f"<th>{_e(c['shot'])}</th>" for c in cols)
    rows = []
    for i, c in enumerate(cols):
        cells = []
        for j in range(len(cols)):
            v = m["matrix"][i][j]
            if v is None:
                cells.append('<td class="muted">–</td>')
            else:
                # Red for low, green for high agreement.
                hue = int(120 * max(0.0, min(1.0, v)))
                cells.append(f'<td style="background:hsl({hue},70%,85%)">{v:.3f}</td>')
        status = "" if c["status"] == "ok" else f' <span class="muted">({_e(c["status"])})</span>'
        rows.append(f"<tr><th>{_e(c['shot'])}{status}</th>{''.join(cells)}</tr>")
    return (f"<h3>{_e(m['character'])}</h3><p class='muted'>{_e(m['measure'])}; engine "
            f"{_e(m['engine'] or 'none')}</p><table class='matrix'><tr><th></th>{head}</tr>"
            f"{''.join(rows)}</table>")


def _shot_html(index: int, it: "PlanItem", project: Project, folder: Path,
               analysis: dict[str, Any] | None) -> str:
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
    sidecar = load_sidecar(folder, take)
    if sidecar:
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

    frames_meta: list[dict[str, Any]] = []
    worst: list[int] = []
    if analysis is None:
        out.append('<h3>Identity</h3><p class="muted">not analysed</p>')
    else:
        s = analysis["summary"]
        eng = analysis.get("engine") or {}
        frames_meta = [f for f in analysis.get("frames") or [] if isinstance(f, dict)]
        ranges = [r for r in s.get("drift_ranges") or [] if isinstance(r, dict)]
        fps = float(src.fps)
        rng_text = ", ".join(
            f"{r.get('start')}–{r.get('end')} ({_fmt(r.get('start', 0) / fps, 2)}–"
            f"{_fmt(r.get('end', 0) / fps, 2)} s: {', '.join(map(str, r.get('reasons') or []))})"
            for r in ranges if isinstance(r.get("start"), int) and isinstance(r.get("end"), int))
        mean = s.get("identity_mean")
        thr = eng.get("threshold")
        cls = "ok" if isinstance(mean, (int, float)) and isinstance(thr, (int, float)) and mean >= thr else "bad"
        rows = [("engine", _e(f"{eng.get('name', '?')} {eng.get('model', '')} "
                              f"{eng.get('version', '')}")),
                ("identity mean", f"<span class={cls}>{_e(_fmt(mean))}</span>"),
                ("identity min", _e(_fmt(s.get("identity_min")))),
                ("flagged frames", _e(f"{100 * float(s.get('flagged_fraction') or 0):.1f} %")),
                ("drift ranges", _e(rng_text or "none")),
                ("motion", _e(_fmt(s.get("motion"))))]
        out.append("<h3>Identity</h3><table class='identity'>"
                   + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
                   + "</table>")
        out.append(identity_svg(frames_meta, ranges, thr if isinstance(thr, (int, float)) else None,
                                src.frames))
        worst = [int(i) for i in (s.get("worst_frames") or [])
                 if isinstance(i, int) and 0 <= i < src.frames][:WORST_FRAMES]

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
    if worst:
        arrays = (analysis or {}).get("arrays") or {}
        heat, boxes = arrays.get("heatmaps"), arrays.get("boxes")
        out.append("<h3>Worst frames</h3><div class='worst'>")
        for i in worst:
            if i not in grabbed:
                continue
            img = grabbed[i]
            if heat is not None and i < len(heat):
                img = overlay_heatmap(img, heat[i], boxes[i] if boxes is not None and i < len(boxes) else None)
            ident = next((f.get("identity") for f in frames_meta if f.get("index") == i), None)
            reasons = next((f.get("reasons") for f in frames_meta if f.get("index") == i), None) or []
            out.append(f'<figure><img alt="worst frame {i}" src="{_jpeg_uri(img, WORST_WIDTH)}">'
                       f"<figcaption>frame {i} ({i / fps:.2f} s) · identity {_e(_fmt(ident))}"
                       f"{' · ' + _e(', '.join(map(str, reasons))) if reasons else ''}"
                       "</figcaption></figure>")
        out.append("</div>")
    out.append("</section>")
    return "".join(out)


def build_report(project: Project, folder: Path, plan: "ExportPlan", *,
                 film_name: str | None = None) -> str:
    """The report as an HTML string."""
    folder = Path(folder)
    analyses: dict[str, dict[str, Any] | None] = {}
    for it in plan.included:
        if it.take is not None:
            analyses[it.take.id] = load_analysis(folder, it.take.id, arrays=True)
    analysed = sum(1 for a in analyses.values() if a is not None)
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
    matrices = character_matrices(project, folder, plan, analyses)
    body.append("<h2>Cross-shot identity</h2>")
    if matrices:
        body.extend(_matrix_html(m) for m in matrices)
    else:
        body.append("<p class='muted'>No shot in the cut is assigned to a character.</p>")
    for i, it in enumerate(plan.items, 1):
        analysis = analyses.get(it.take.id) if it.take is not None else None
        body.append(_shot_html(i, it, project, folder, analysis))
    body.append("<p class='muted'>Generated by Continuity Studio.</p></body></html>")
    return head + "".join(body)


def write_report(project: Project, folder: Path, plan: "ExportPlan", out_path: Path, *,
                 film_name: str | None = None) -> Path:
    out_path = Path(out_path).absolute()
    text = build_report(project, folder, plan, film_name=film_name)
    try:
        atomic_write_text(out_path, text)
    except OSError as exc:
        raise StudioError(f"cannot write: {exc.strerror or exc}", out_path) from None
    return out_path
