import numpy as np
import skimage.data

from studio.identity.landmarks import detect_landmarks_68, detect_faces


def test_landmarks_on_astronaut():
    img = skimage.data.astronaut()
    lm = detect_landmarks_68(img)
    assert lm is not None and lm.shape == (68, 2) and lm.dtype == np.float32
    # Eileen Collins' face is roughly at x 150..260, y 70..210 in this 512x512 photo.
    assert 140 < lm[:, 0].mean() < 260 and 60 < lm[:, 1].mean() < 220
    # Left eye (36..41) is left of the right eye (42..47), the mouth (48..67) is below the eyes.
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()
    assert lm[48:68, 1].mean() > lm[36:48, 1].mean()


def test_no_face_gives_none():
    assert detect_landmarks_68(np.full((120, 160, 3), 128, np.uint8)) is None
    assert detect_faces(np.zeros((64, 64, 3), np.uint8)) == []


def test_shared_models_are_safe_from_several_threads() -> None:
    """Analysis, the reference check and the preview backend use the same dlib models from
    different threads. dlib's HOG detector releases the GIL and keeps mutable scan buffers, so
    concurrent calls on images of different sizes corrupted the heap and killed the process
    (measured: a crash every run without the lock). Every thread must get exactly what a single
    thread gets."""
    from concurrent.futures import ThreadPoolExecutor

    from studio.identity.engines import DlibEngine
    from studio.identity.landmarks import detect_faces, detect_landmarks_68
    from studio.identity.samples import astronaut

    base = astronaut()
    images = [base, np.ascontiguousarray(base[:400, :300]),
              np.kron(base, np.ones((2, 2, 1), np.uint8))]  # three sizes: buffers are rebuilt
    engine = DlibEngine()

    def work(i: int) -> tuple[int, list, np.ndarray, np.ndarray]:
        img = images[i % 3]
        lm = detect_landmarks_68(img)
        assert lm is not None
        return i % 3, detect_faces(img), lm, engine.embed(img, lm)

    expected = [work(k)[1:] for k in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(work, range(24)))
    for k, faces, lm, emb in results:
        want_faces, want_lm, want_emb = expected[k]
        assert faces == want_faces
        np.testing.assert_array_equal(lm, want_lm)
        np.testing.assert_allclose(emb, want_emb, atol=1e-6)
