"""Stand-in for comfy.utils.ProgressBar; every update is recorded in UPDATES."""

UPDATES = []


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        UPDATES.append((self.current, self.total))
