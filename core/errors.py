"""Typed errors of the library. Each says what went wrong and what to do about it."""

from __future__ import annotations


class XFVError(Exception):
    """Base class of every error this library raises on purpose."""


class InvalidImageError(XFVError, ValueError):
    """The input is not an image this library can read (empty, truncated, not an image,
    too large, zero-sized, or of an unsupported kind)."""


class NoFaceError(XFVError):
    """No face was found in an image that should contain one."""


class ModelUnavailableError(XFVError, RuntimeError):
    """A model's weights are not available here (for example offline) or its package is
    missing. The message says what to download and where to put it."""


class UnknownNameError(XFVError, KeyError):
    """A registry key (model, explainer) that does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class CalibrationError(XFVError, ValueError):
    """A calibration cannot be built or read (too few pairs, one class missing, bad file)."""


class DataError(XFVError, ValueError):
    """A pairs or identities file is malformed or refers to missing images."""


class MethodRequirementError(XFVError):
    """An explainer needs something the chosen model does not offer (e.g. gradients)."""


class InvalidParameterError(XFVError, ValueError):
    """A parameter (an explainer's knob, an option) with a value outside what it allows.
    The message names the parameter, the value given and what is allowed."""
