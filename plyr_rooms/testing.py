"""Pytest fixtures for testing room subclasses against the embedded simulator.

(Fixtures are added by the simulator work; this module is loaded as a pytest plugin.)
"""

from __future__ import annotations
