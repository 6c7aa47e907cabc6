"""The one exception type users see: `DPError` carries a one-line message.

The CLI turns it into `error: <message>` and a non-zero exit, never a traceback.
Library code raises it for bad input at the edge (files, names, settings).
"""


class DPError(Exception):
    """A user-facing error: bad input, missing file, unknown name, locked cache."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
