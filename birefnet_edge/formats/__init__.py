"""What each target format accepts in a profile's ``[options]``: one frozen dataclass per format.

These modules hold only data (no backend import), so ``profile.py`` can validate a profile when it
is loaded and both ``export/<format>.py`` and ``runtime/<format>.py`` can read the same options
without the runtime importing the exporter. Registering an options class here is what makes a
format name legal in a profile. Every public module of this package is imported (and so registered)
when the package is: a new format's file needs no import line here.
"""

from birefnet_edge._registry import import_submodules
from birefnet_edge.formats._base import FORMAT_OPTIONS, FormatOptions, choice, register
from birefnet_edge.formats._snippets import Snippet

__all__ = ["FORMAT_OPTIONS", "FormatOptions", "Snippet", "choice", "register"]

import_submodules(__name__, __path__)
