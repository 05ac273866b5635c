"""Export: the film, interchange files (OTIO, EDL) and the drift report, all from one plan."""
