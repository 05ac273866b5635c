"""The PySide6 desktop UI. The only package that imports Qt (enforced by import-linter)."""
