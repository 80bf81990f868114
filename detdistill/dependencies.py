"""The error raised where an optional package a code path needs is missing (torch-free, imports nothing)."""


class MissingDependencyError(ImportError):
    """An optional package is not installed here; the message names what needs it and the install command."""
