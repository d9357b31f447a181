"""Errors a user can cause, each with a message that says what, where and what to do.

Every error raised for bad input (files, configs, models, structures) is an
:class:`MLFFError`; the command line prints its message without a traceback and exits
with status 2. Programming errors inside mlff stay ordinary Python exceptions.
"""

from __future__ import annotations


class MLFFError(Exception):
    """Base class of every error a user can cause and fix."""


class DataError(MLFFError):
    """A structure file is missing, unreadable, or holds bad or incomplete labels."""


class ConfigError(MLFFError):
    """A configuration file or option is invalid."""


class ModelFileError(MLFFError):
    """A model or checkpoint file is missing, corrupt, or from an incompatible version."""


class UnknownElementError(MLFFError):
    """A structure contains an element the model was not trained on."""


class SimulationError(MLFFError):
    """A simulation cannot run as asked (wrong ensemble for the structure, bad settings)."""


class OracleError(MLFFError):
    """A reference calculation cannot run as configured (oracle, executor, reference MD)."""


class DataWarning(UserWarning):
    """Data that can be used but looks wrong (e.g. labels in other units than eV and Å)."""
