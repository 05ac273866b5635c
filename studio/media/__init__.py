"""Image and video I/O, frame caches and export. No Qt here."""
