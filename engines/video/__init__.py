"""The temporal video pipeline: recurrence (temporal), scene cuts, motion-adaptive blending, the
video options (options), chunk planning and warm-up (chunks), file I/O (container, encode,
remux), the streaming pipeline (stream) and resumable runs (resume)."""
