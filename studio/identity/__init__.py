"""Identity drift analysis: face engines, per-frame metrics, heatmaps, bible and prompt checks.

Heavy libraries (dlib, cv2, onnxruntime) are imported lazily inside functions; importing this
package is cheap. The public API lives in :mod:`studio.identity.api`.
"""
