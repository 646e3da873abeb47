"""Per-host timelines: the line format (:mod:`.format`) and the batched writer (:mod:`.writer`)."""
