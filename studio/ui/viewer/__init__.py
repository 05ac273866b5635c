"""The take viewer: frame-accurate playback and scrubbing with drift overlays, metric plot,
matched reference, A/B comparison, take strip, re-roll; plus storyboard badge helpers."""

from studio.ui.viewer.badges import (Badge, ShotBadge, ThumbnailCache, identity_level,
                                     paint_badge, shared_thumbnails, shot_badge, take_badge)
from studio.ui.viewer.viewer import ViewerWidget, timecode

__all__ = ["Badge", "ShotBadge", "ThumbnailCache", "ViewerWidget", "identity_level",
           "paint_badge", "shared_thumbnails", "shot_badge", "take_badge", "timecode"]
