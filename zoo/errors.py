"""Every error and warning molzoo raises on purpose, in one place.

A :class:`ZooError` is a user or environment problem whose message is the whole story: it names
what is wrong (file, row, field, component, close matches) and the fix. ``zoo`` prints it as one
line ``zoo: error: ...`` and exits 2 (``ZOO_DEBUG=1`` shows the traceback). Any other exception
is a bug. Classes keep a built-in base (``ValueError``, ``RuntimeError``, ``KeyError``) where
callers catch by it.

This module imports nothing: every layer (registry, plugins, commands) may use it.
"""

from __future__ import annotations


class ZooError(Exception):
    """A problem the user can fix; its message is the whole story (the CLI prints it in one line)."""


class ZooWarning(UserWarning):
    """Something molzoo worked around and the user should know about."""


# -- components and specs ------------------------------------------------------------------------
class ComponentError(ZooError, ValueError):
    """A component could not be registered, found or configured."""


class DuplicateComponentError(ComponentError):
    """Two plugins registered the same name for the same kind."""


class UnknownComponentError(ComponentError, KeyError):
    """No component of that kind has that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnknownOptionError(ComponentError):
    """An option that a component does not accept."""


class SpecError(ComponentError):
    """A spec that cannot be read or validated."""


class GalleryError(SpecError):
    """A gallery name a task does not have (:meth:`zoo.taskdata.Gallery.parse`)."""


class TextEncoderUnavailable(ZooError, RuntimeError):
    """The backbone's weights cannot be loaded (offline, missing path, bad files)."""


# -- data and molecules --------------------------------------------------------------------------
class DataError(ZooError, ValueError):
    """Input data that cannot be used; the message names the file, row and field."""


class SmilesError(ZooError, ValueError):
    """A SMILES string that RDKit cannot parse."""


class FeaturizeError(ZooError, ValueError):
    """A molecule that the featurizer could not turn into a graph."""


# -- files and runs ------------------------------------------------------------------------------
class OutputPathError(ZooError, ValueError):
    """A file or folder that cannot be written where it was asked for (a file where a folder is
    needed, a folder where a file is needed, no permission)."""


class RunError(ZooError, RuntimeError):
    """A run that cannot start or continue (clear message, nothing half-written)."""


class FitError(RunError):
    """A component cannot be fitted, or its saved fitted state cannot be loaded."""


class OpsinError(ZooError, RuntimeError):
    """OPSIN cannot run (no Java, no jar) or its output cannot be used; the message says what to do."""


class OpsinTimeout(OpsinError):
    """A long-lived OPSIN process did not answer in time (``zoo serve``: the query goes on without its names)."""


class ServeError(ZooError):
    """A request ``zoo serve`` refuses: ``status`` is its HTTP status (422, 413, 404), the message one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class IntegrityError(ZooError, ValueError):
    """A file whose bytes do not match its recorded content hash, or that cannot be parsed at all.
    The message starts with the path; callers add the fix (``--fresh``, a rebuild command)."""


class LeaderboardError(ZooError, ValueError):
    """Results that cannot be loaded, or a leaderboard request that names unknown things."""


# -- warnings ------------------------------------------------------------------------------------
class PluginLoadWarning(ZooWarning):
    """A plugin failed to load; the others keep working."""


class DataWarning(ZooWarning):
    """Input rows that were skipped (e.g. unparseable SMILES)."""


class SubstitutionWarning(ZooWarning):
    """A component was replaced by a fallback (e.g. SciBERT unreachable -> MiniLM)."""


class UnverifiedFileWarning(ZooWarning):
    """A file written before molzoo recorded content hashes, loaded without verification."""

