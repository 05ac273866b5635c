"""Continuity Studio: storyboard to video with image-to-video models, keeping faces consistent."""

__version__ = "0.1.0"
