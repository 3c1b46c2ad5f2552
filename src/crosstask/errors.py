"""The one error type users see as a single line (bad config, task, data or model)."""


class CrosstaskError(ValueError):
    pass
