"""The one exception type users see.

Every check of user input (paths, audio, data folders, checkpoints) raises `CospeechError`
with a one-line message that says what was wrong; the CLI prints it and exits non-zero.
"""


class CospeechError(Exception):
    """A problem with the user's input or files, reported as one line."""
