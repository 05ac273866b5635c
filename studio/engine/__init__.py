"""Generation backends and the job queue. Qt-free; heavy imports happen inside functions."""
