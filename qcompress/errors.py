"""Errors a user can act on. The CLI prints their message (no traceback) and exits with
``exit_code``; anything else is a bug and keeps its traceback."""

from __future__ import annotations


class QcompressError(Exception):
    """Base of every user-facing error."""

    exit_code = 1


class SuiteError(QcompressError):
    """The suite file is unreadable or invalid. Nothing has been run or written."""

    exit_code = 2


class PluginError(QcompressError):
    """A plugin is unknown, broken, or registers a name another plugin already has."""

    exit_code = 2


class DataError(QcompressError):
    """A task's data cannot be found or read."""

    exit_code = 1


class NonFiniteLossError(QcompressError):
    """Training produced a NaN or infinite loss."""


class CircuitError(QcompressError):
    """A circuit, or the inputs it was given, is malformed."""
