"""The open project at work (Qt-free): document, job queue, analyses and one event stream."""
