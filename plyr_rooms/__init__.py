"""plyr-rooms: safe, fast game rooms on the PLYR Gaming Universe API."""

from __future__ import annotations
