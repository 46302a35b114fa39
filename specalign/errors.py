"""User-facing errors. The entry point prints their message (no traceback) and exits 2, so a
researcher sees which file or key is wrong and how to fix it before any model loads."""


class SpecAlignError(Exception):
    """A problem with the user's input or configuration (bad spec, unknown setting, ...)."""

    exit_code = 2


class StepNotImplementedError(SpecAlignError):
    """A stage names a step whose class does not exist yet: fail at start, never silently."""


class ConfigError(SpecAlignError):
    """A composed configuration that cannot be run as asked (missing input, wrong kind, ...)."""
