"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class ClipbenchError(Exception):
    """Bad input or an unusable environment; the message says what is wrong and what is valid."""


class DivergenceError(ClipbenchError):
    """Training produced a non-finite loss."""
