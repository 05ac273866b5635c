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
