"""The fuzz package's pytest setup."""

from __future__ import annotations

import contextlib
import warnings

# Hypothesis imports its patch writer (hypothesis.extra._patching, which pulls in
# libcst) only when reporting a failure; under the project's filterwarnings = error a
# DeprecationWarning from that import turns a clear falsifying example into an
# INTERNALERROR with no report. Import it once here, warnings silenced, so a failure
# reads as one.
with warnings.catch_warnings(), contextlib.suppress(Exception):  # missing: nothing to do
    warnings.simplefilter("ignore")
    import hypothesis.extra._patching  # noqa: F401
