"""dlib's 68-point model vs MediaPipe Face Mesh (mapped to iBUG 68) on known camera moves.

The calibration set: the real photographs of the identity tests (scikit-image's astronaut and
the six people of insightface's t1.jpg), rendered into 832x480 frames by KNOWN affine warps
(roll ≤ 10°, zoom 0.8-1.3, shifts, brightness ±15 %, JPEG q85). Both models get the same dlib
HOG box per frame (that is how the app finds a face). Measured, in inter-ocular units (outer eye
corners 36-45 of dlib on the unwarped frame, the same denominator for both models):

1. equivariance: landmarks on a warped frame, mapped back by the inverse warp, vs landmarks on
   the unwarped frame (mean and 95th percentile), per landmark group;
2. jitter on a slow move: second difference over time after removing the known motion;
3. agreement between the two models (NME over 68 points);
4. speed per face (ms): the box step, each model, and both together.

Run: ``python -m benchmarks.landmark_models`` (prints JSON). The mesh model is skipped with a
reason when its wheel (``pip install --no-deps mediapipe==0.10.21``) is not installed. When
Google's LiteRT runtime (``ai-edge-litert``) is importable, the OpenCV run of the network is
also checked against it on the same crops.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

GROUPS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36),
          "eyes": range(36, 48), "mouth": range(48, 68)}
SIZE = (832, 480)
N_WARPS = 12  # per photo
CLIP = 40  # frames of the slow move


def _photos() -> dict[str, np.ndarray]:
    sys.path.insert(0, "tests/identity")
    from identity_helpers import t1_faces  # noqa: E402  (test media, not part of the app)

    from studio.identity.samples import astronaut

    out = {"astronaut": astronaut()}
    try:
        out.update({f"t1_{i}": f for i, f in enumerate(t1_faces())})
    except BaseException as exc:  # pytest.skip when insightface's wheel data is absent
        print(f"t1 faces skipped: {exc}", file=sys.stderr)
    return out


def _warp(photo: np.ndarray, ang: float, zoom: float, dx: float, dy: float) -> np.ndarray:
    """2x3 affine photo → frame: the photo fills the frame height, then the camera move."""
    import cv2

    w, h = SIZE
    ph, pw = photo.shape[:2]
    m = cv2.getRotationMatrix2D((pw / 2, ph / 2), ang, h / ph * zoom)
    m[0, 2] += w / 2 - pw / 2 + dx
    m[1, 2] += h / 2 - ph / 2 + dy
    return m


def _render(photo: np.ndarray, m: np.ndarray, gain: float = 1.0, jpeg: int | None = None,
            ) -> np.ndarray:
    import cv2

    f = cv2.warpAffine(photo, m, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    f = np.clip(f.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    if jpeg:
        ok, buf = cv2.imencode(".jpg", f[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg])
        f = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    return f


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _inv(m: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.invertAffineTransform(m)


def _box(frame: np.ndarray, near: np.ndarray | None = None,
         ) -> tuple[float, float, float, float] | None:
    """dlib's HOG box; with ``near`` (where the known warp puts the face) the box on it, so a
    mirrored copy in the reflected border or a neighbour in t1.jpg is not measured as a model
    error (this measures the landmark models, not the detector)."""
    from studio.identity.landmarks import detect_faces

    faces = detect_faces(frame, 0) or detect_faces(frame, 1)
    if near is not None:
        faces = [f for f in faces if np.hypot((f[0][0] + f[0][2]) / 2 - near[0],
                                              (f[0][1] + f[0][3]) / 2 - near[1])
                 < 0.5 * (f[0][2] - f[0][0])]
    if not faces:
        return None
    return max(faces, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))[0]


def _models() -> tuple[dict[str, Callable[[np.ndarray, Any], np.ndarray]], dict[str, str]]:
    from studio.identity import landmarks, mesh_landmarks

    models: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
        "dlib68": lambda img, box: landmarks.landmarks_in_box(img, box, 68)}
    skipped: dict[str, str] = {}
    if mesh_landmarks.available():
        for r in (0, 1, 2):
            name = "mesh" if r == mesh_landmarks.REFINE else f"mesh_refine{r}"
            models[name] = (lambda rr: lambda img, box: mesh_landmarks.landmarks_68(
                img, box, refine=rr))(r)
    else:
        try:
            mesh_landmarks.model_path()
            skipped["mesh"] = "this OpenCV has no cv2.dnn.readNetFromTFLite"
        except Exception as exc:
            skipped["mesh"] = str(exc)
    return models, skipped


def _stats(err: np.ndarray) -> dict[str, Any]:
    """err: (n, 68) per-point errors in IOD units."""
    if err.size == 0:
        return {}
    out: dict[str, Any] = {"all": {"mean": round(float(err.mean()), 4),
                                   "p95": round(float(np.percentile(err, 95)), 4)}}
    for g, idx in GROUPS.items():
        e = err[:, list(idx)]
        out[g] = {"mean": round(float(e.mean()), 4), "p95": round(float(np.percentile(e, 95)), 4)}
    return out


def _litert_check(photos: dict[str, np.ndarray]) -> dict[str, Any]:
    """Max difference between OpenCV's and LiteRT's outputs of the network on real crops."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        return {"skipped": f"ai-edge-litert not installed ({exc})"}
    from studio.identity import mesh_landmarks as ml

    it = Interpreter(model_path=str(ml.model_path()), num_threads=2)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    net = ml._net()
    worst = 0.0
    for photo in photos.values():
        box = _box(photo)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        m = ml.roi_matrix(np.array([(x0 + x1) / 2, (y0 + y1) / 2]),
                          max(x1 - x0, y1 - y0) * ml.BOX_SCALE, 0.0)
        blob = ml.input_blob(photo, m)
        it.set_tensor(inp, np.ascontiguousarray(blob.transpose(0, 2, 3, 1)))
        it.invoke()
        net.setInput(blob)
        worst = max(worst, float(np.abs(it.get_tensor(out).ravel() - net.forward().ravel()).max()))
    return {"max_abs_diff_px_of_192": round(worst, 6)}


def main() -> None:
    from benchmarks._common import machine_info

    photos = _photos()
    models, skipped = _models()
    rng = np.random.default_rng(7)
    equi: dict[str, list[np.ndarray]] = {k: [] for k in models}
    agree: dict[str, list[np.ndarray]] = {k: [] for k in models if k != "dlib68"}
    jit: dict[str, list[np.ndarray]] = {k: [] for k in models}
    times: dict[str, list[float]] = {k: [] for k in ["box", *models]}
    no_box = 0
    per_photo: dict[str, dict[str, float]] = {}

    def run_all(frame: np.ndarray, near: np.ndarray | None = None,
                ) -> dict[str, np.ndarray] | None:
        t0 = time.perf_counter()
        box = _box(frame, near)
        times["box"].append((time.perf_counter() - t0) * 1000)
        if box is None:
            return None
        res = {}
        for name, fn in models.items():
            t0 = time.perf_counter()
            res[name] = fn(frame, box).astype(np.float64)
            times[name].append((time.perf_counter() - t0) * 1000)
        return res

    for pname, photo in photos.items():
        m0 = _warp(photo, 0, 1.0, 0, 0)
        base = run_all(_render(photo, m0))
        if base is None:
            no_box += 1
            continue
        face_c = _apply(_inv(m0), base["dlib68"].mean(0)[None])  # the face centre, photo px
        iod = float(np.linalg.norm(base["dlib68"][36] - base["dlib68"][45]))
        per_photo[pname] = {"iod_px": round(iod, 1)}
        for name in agree:
            e = np.linalg.norm(base[name] - base["dlib68"], axis=1) / iod
            agree[name].append(e)
            per_photo[pname][f"nme_{name}_vs_dlib"] = round(float(e.mean()), 4)
        for _ in range(N_WARPS):  # 1. equivariance under random known warps
            mk = _warp(photo, rng.uniform(-10, 10), rng.uniform(0.8, 1.3),
                       rng.uniform(-80, 80), rng.uniform(-30, 30))
            res = run_all(_render(photo, mk, rng.uniform(0.85, 1.15), jpeg=85),
                          _apply(mk, face_c)[0])
            if res is None:
                no_box += 1
                continue
            back = m0 @ np.vstack([_inv(mk), [0, 0, 1]])  # warped frame → unwarped frame
            for name, lm in res.items():
                equi[name].append(np.linalg.norm(_apply(back, lm) - base[name], axis=1) / iod)
            for name in agree:
                agree[name].append(np.linalg.norm(res[name] - res["dlib68"], axis=1)
                                   / iod / np.sqrt(abs(np.linalg.det(mk[:, :2]) /
                                                       np.linalg.det(m0[:, :2]))))
        tracks: dict[str, list[np.ndarray]] = {k: [] for k in models}
        for i in range(CLIP):  # 2. jitter on a slow move (roll, push-in, pan)
            t = i / (CLIP - 1)
            mk = _warp(photo, 4 * np.sin(np.pi * t), 1 + 0.1 * t, 40 * t, 5 * t)
            res = run_all(_render(photo, mk, jpeg=85), _apply(mk, face_c)[0])
            if res is None:
                no_box += 1
                tracks = {k: [] for k in models}  # a gap breaks the second difference
                continue
            back = m0 @ np.vstack([_inv(mk), [0, 0, 1]])
            for name, lm in res.items():
                tracks[name].append(_apply(back, lm))
        for name, tr in tracks.items():
            if len(tr) >= 3:
                a = np.array(tr)
                jit[name].append(np.linalg.norm(a[2:] - 2 * a[1:-1] + a[:-2], axis=2).reshape(
                    -1, 68) / iod)

    def ms(v: list[float]) -> float | None:
        return round(float(np.median(v)), 2) if v else None

    speed = {k: ms(v) for k, v in times.items()}
    for k in models:
        if speed.get(k) is not None and speed["box"] is not None:
            speed[f"box+{k}"] = round(speed["box"] + speed[k], 2)
    report: dict[str, Any] = {
        "machine": machine_info(),
        "photos": list(photos),
        "frames_without_a_box": no_box,
        "skipped": skipped,
        "equivariance_iod": {k: _stats(np.stack(v)) if v else {} for k, v in equi.items()},
        "jitter_iod": {k: _stats(np.concatenate(v)) if v else {} for k, v in jit.items()},
        "agreement_vs_dlib_nme": {k: _stats(np.stack(v)) if v else {} for k, v in agree.items()},
        "per_photo": per_photo,
        "speed_ms_per_face": speed,
    }
    if "mesh" in models:
        from studio.identity import mesh_landmarks

        report["mesh_licence"] = mesh_landmarks.licence()
        report["litert_check"] = _litert_check(photos)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
