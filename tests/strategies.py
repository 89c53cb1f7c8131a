"""Hypothesis strategies for the room core (plyr_rooms.lifecycle)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from hypothesis import strategies as st

from plyr_rooms.lifecycle import Payment, Step

if TYPE_CHECKING:
    from collections.abc import Sequence

#: A small pool, so that steps often name the same players.
PLYR_IDS = ("p0", "p1", "p2", "p3", "p4")
TOKENS = ("plyr", "gamr")

plyr_ids = st.sampled_from(PLYR_IDS)
tokens = st.sampled_from(TOKENS)
steps = st.sampled_from(list(Step))


def amounts(max_value: Decimal | int = 100) -> st.SearchStrategy[Decimal]:
    """Amounts from 0 to *max_value*: mostly cents, sometimes the smallest unit."""
    top = Decimal(max_value)
    cents = st.decimals(min_value=0, max_value=top, places=2)
    fine = st.decimals(min_value=0, max_value=min(top, Decimal(1)), places=18)
    return st.one_of(cents, fine, st.just(top))


def payments(
    ids: Sequence[str] = PLYR_IDS,
    max_amount: Decimal | int = 100,
    max_size: int = 4,
) -> st.SearchStrategy[list[Payment]]:
    """Lists of pay/earn entries among *ids*."""
    entry = st.builds(Payment, st.sampled_from(list(ids)), tokens, amounts(max_amount))
    return st.lists(entry, min_size=1, max_size=max_size)


def id_lists(ids: Sequence[str] = PLYR_IDS) -> st.SearchStrategy[list[str]]:
    """Non-empty lists of plyr ids (duplicates allowed, as the API allows them)."""
    return st.lists(st.sampled_from(list(ids)), min_size=1, max_size=4)
