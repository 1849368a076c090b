"""Error types shared by the listener and the trainer, in a module that imports nothing heavy
(so a CLI can catch them without importing torch or scipy)."""


class AudioFileError(Exception):
    """An audio file could not be used. The message names the file and why."""


class ModelFileError(Exception):
    """A model file is missing, unreadable, or not a snap-mqtt model. The message names the file."""
