"""Project model and persistence. Pure Python: no Qt, no numpy, no heavy imports."""
