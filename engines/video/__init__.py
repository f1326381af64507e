"""The temporal video pipeline: recurrence, scene cuts, motion-adaptive blending."""
