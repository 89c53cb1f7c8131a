"""The sans-IO room core: the table, the book's rules, and a rule-based machine."""

from __future__ import annotations

from decimal import Decimal

import pytest
import strategies as sts
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from plyr_rooms.errors import InvalidInput, InvalidTransition
from plyr_rooms.lifecycle import (
    COMPOSITES,
    TRANSITIONS,
    Payment,
    Player,
    PlayerState,
    RoomBook,
    RoomState,
    Step,
    advance,
    fail,
    plan,
    split_earn,
    table_markdown,
    to_amount,
)


def _paid_room(*pays: tuple[str, str]) -> RoomBook:
    entries = [Payment(p, "plyr", a) for p, a in pays]
    return advance(RoomBook(), Step.CREATE_JOIN_PAY, payments=entries)


class TestTable:
    def test_only_create_steps_leave_new(self) -> None:
        """A room that does not exist yet can only be created."""
        assert set(TRANSITIONS[RoomState.NEW]) == {Step.CREATE, Step.CREATE_JOIN_PAY}

    def test_nothing_after_ended(self) -> None:
        """An ended room accepts no step at all."""
        for step in Step:
            with pytest.raises(InvalidTransition) as caught:
                plan(RoomState.ENDED, step)

            assert caught.value.state is RoomState.ENDED
            assert caught.value.allowed == ()

    def test_targets_never_move_back(self) -> None:
        """Every move in the table keeps or raises the room's rank."""
        for state, row in TRANSITIONS.items():
            for target in row.values():
                assert target.rank >= state.rank

    def test_composites_are_the_fold_of_their_parts(self) -> None:
        """A composite row is where its parts lead, one after the other."""
        for state, row in TRANSITIONS.items():
            for step, parts in COMPOSITES.items():
                current: RoomState | None = state
                for part in parts:
                    current = (
                        None if current is None else TRANSITIONS[current].get(part)
                    )

                assert row.get(step) is current

    def test_refusal_names_state_step_and_allowed(self) -> None:
        """The error says where the room was, what was asked, and what was legal."""
        with pytest.raises(InvalidTransition) as caught:
            plan(RoomState.NEW, Step.PAY)

        assert caught.value.step is Step.PAY
        assert caught.value.allowed == (Step.CREATE, Step.CREATE_JOIN_PAY)
        assert "PAY" in str(caught.value)
        assert "NEW" in str(caught.value)

    def test_table_prints_as_markdown(self) -> None:
        """The docs print the same table the code consults."""
        text = table_markdown()
        assert text.count("\n") == 2 + len(RoomState)
        assert "| NEW | CREATED |" in text

    def test_failed_room_can_only_give_back_and_end(self) -> None:
        """After a hook failed, no one joins or pays any more."""
        allowed = set(TRANSITIONS[RoomState.FAILED])
        assert Step.JOIN not in allowed
        assert Step.PAY not in allowed
        assert {Step.EARN_LEAVE_END, Step.END} <= allowed


class TestValues:
    def test_amounts_refuse_floats_negatives_and_dust(self) -> None:
        """Money is exact: floats, negatives and sub-unit amounts are refused."""
        for bad in (0.1, -1, "abc", "NaN", "Infinity", "1e-19"):
            with pytest.raises(InvalidInput):
                to_amount(bad)  # type: ignore[arg-type]

        assert to_amount("1.50") == Decimal("1.5")
        assert to_amount("-0") == 0
        assert to_amount(10**30) == Decimal(10**30)

    def test_player_lower_cases_and_hides_its_jwt(self) -> None:
        """The plyr id is normalised and the session JWT never shows."""
        player = Player("Alice", "secret.jwt.value")
        assert player.plyr_id == "alice"
        assert "secret" not in repr(player)

    def test_fee_is_floored_in_the_smallest_unit(self) -> None:
        """The chain keeps floor(2 %) of every earn; the player gets the rest."""
        assert split_earn(Decimal(10)) == (Decimal("9.8"), Decimal("0.2"))
        net, fee = split_earn(Decimal("0.000000000000000049"))
        assert fee == 0
        assert net == Decimal("0.000000000000000049")

    def test_book_round_trips_through_json(self) -> None:
        """The journal can store a book and read it back."""
        book = _paid_room(("a", "1.25"), ("b", "3"))
        assert RoomBook.from_json(book.to_json()) == book


class TestRules:
    def test_pay_needs_membership(self) -> None:
        """Nobody pays unless in the room."""
        book = _paid_room(("a", "1"))
        with pytest.raises(InvalidTransition, match="not in the room"):
            advance(book, Step.PAY, payments=[Payment("b", "plyr", 1)])

    def test_earn_cannot_empty_the_pot_below_zero(self) -> None:
        """The pot per token never goes negative, even within one step."""
        book = _paid_room(("a", "1"), ("b", "1"))
        entries = [Payment("a", "plyr", "1.5"), Payment("b", "plyr", "0.6")]
        with pytest.raises(InvalidTransition, match="negative"):
            advance(book, Step.EARN, payments=entries)

    def test_earn_in_a_token_never_paid_is_refused(self) -> None:
        """A pot exists per token; another token's pot does not pay out."""
        book = _paid_room(("a", "1"))
        with pytest.raises(InvalidTransition, match="gamr"):
            advance(book, Step.EARN, payments=[Payment("a", "gamr", "0.5")])

    def test_earn_after_leaving_is_refused(self) -> None:
        """Earn comes before that player leaves."""
        book = advance(_paid_room(("a", "1"), ("b", "1")), Step.LEAVE, ["a"])
        with pytest.raises(InvalidTransition, match="already left"):
            advance(book, Step.EARN, payments=[Payment("a", "plyr", 1)])

    def test_nobody_leaves_twice(self) -> None:
        """A second leave of the same player is refused, as is coming back."""
        book = advance(_paid_room(("a", "1")), Step.LEAVE, ["a"])
        with pytest.raises(InvalidTransition, match="already left"):
            advance(book, Step.LEAVE, ["a"])

        with pytest.raises(InvalidTransition, match="already left"):
            advance(book, Step.JOIN, ["a"])

    def test_end_needs_an_empty_pot(self) -> None:
        """End is refused while any token's pot is not zero."""
        book = _paid_room(("a", "1"))
        with pytest.raises(InvalidTransition, match="pot is not empty"):
            advance(book, Step.END)

    def test_composite_is_checked_as_its_sequence(self) -> None:
        """earn-leave-end fails as a whole when its end part would fail."""
        book = _paid_room(("a", "1"), ("b", "1"))
        with pytest.raises(InvalidTransition, match="pot is not empty"):
            advance(book, Step.EARN_LEAVE_END, payments=[Payment("a", "plyr", 1)])

        done = advance(
            book,
            Step.EARN_LEAVE_END,
            payments=[Payment("a", "plyr", "1.5"), Payment("b", "plyr", "0.5")],
        )
        assert done.state is RoomState.ENDED
        assert done.members() == ()

    def test_late_join_keeps_the_room_state(self) -> None:
        """A player joining a paid room does not move the room back."""
        book = advance(_paid_room(("a", "1")), Step.JOIN, ["c"])
        assert book.state is RoomState.PAID
        assert book.players["c"] is PlayerState.JOINED

    def test_failed_room_refunds_and_ends(self) -> None:
        """A failed room can still give every token back and end."""
        book = fail(_paid_room(("a", "2"), ("b", "3")))
        assert book.state is RoomState.FAILED
        refund = [Payment("a", "plyr", 2), Payment("b", "plyr", 3)]
        assert advance(book, Step.EARN_LEAVE_END, payments=refund).state is (
            RoomState.ENDED
        )


class RoomMachine(RuleBasedStateMachine):
    """Drives the core with valid and invalid steps and checks its invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.book = RoomBook()
        self.high_rank = 0
        self.ever_left: set[str] = set()

    def _try(self, step: Step, ids: list[str], entries: list[Payment]) -> bool:
        before = self.book
        snapshot = before.to_json()
        try:
            after = advance(before, step, ids, entries)
        except InvalidTransition as refused:
            error = refused
        else:
            self._check_move(before, after, step, ids, entries)
            self.book = after
            return True

        # A refused step leaves the book exactly as it was.
        assert self.book is before
        assert before.to_json() == snapshot
        assert error.state is before.state
        assert error.step is step
        return False

    def _check_move(
        self,
        before: RoomBook,
        after: RoomBook,
        step: Step,
        ids: list[str],
        entries: list[Payment],
    ) -> None:
        assert step in TRANSITIONS[before.state]
        assert after.state is TRANSITIONS[before.state][step]
        payers = {e.plyr_id for e in entries}
        movers = payers if step in COMPOSITES else set(ids)
        if Step.PAY in step.parts or Step.EARN in step.parts:
            joining = Step.JOIN in step.parts
            assert all(p in before.players or joining for p in payers)
            assert not payers & self.ever_left

        if Step.LEAVE in step.parts:
            assert not movers & self.ever_left
            self.ever_left |= movers

    @initialize()
    def start(self) -> None:
        assert self.book.state is RoomState.NEW

    @rule(step=sts.steps, ids=sts.id_lists(), entries=sts.payments())
    def any_step(self, step: Step, ids: list[str], entries: list[Payment]) -> None:
        """Anything at all: the core must accept it or refuse it cleanly."""
        self._try(step, ids, entries)

    @precondition(lambda self: self.book.state is RoomState.NEW)
    @rule(entries=sts.payments())
    def open_room(self, entries: list[Payment]) -> None:
        assert self._try(Step.CREATE_JOIN_PAY, [], entries)

    @precondition(
        lambda self: (
            bool(self.book.members()) and self.book.state is not RoomState.ENDED
        )
    )
    @rule(data=st.data())
    def members_pay(self, data: st.DataObject) -> None:
        entries = data.draw(sts.payments(self.book.members()))
        ok = self._try(Step.PAY, [], entries)
        assert ok is (self.book.state is not RoomState.FAILED)

    @precondition(
        lambda self: bool(self.book.members()) and not self.book.pot_is_empty()
    )
    @rule(data=st.data(), leave=st.booleans())
    def members_earn_within_pot(self, data: st.DataObject, leave: bool) -> None:
        token = data.draw(
            st.sampled_from(sorted(t for t, a in self.book.pot.items() if a))
        )
        who = data.draw(st.sampled_from(self.book.members()))
        amount = data.draw(sts.amounts(self.book.pot[token]))
        step = Step.EARN_LEAVE if leave else Step.EARN
        assert self._try(step, [], [Payment(who, token, amount)])

    @precondition(lambda self: bool(self.ever_left))
    @rule(data=st.data())
    def left_player_is_refused(self, data: st.DataObject) -> None:
        who = data.draw(st.sampled_from(sorted(self.ever_left)))
        step = data.draw(st.sampled_from([Step.LEAVE, Step.PAY, Step.EARN, Step.JOIN]))
        assert not self._try(step, [who], [Payment(who, "plyr", 0)])

    @precondition(lambda self: not self.book.pot_is_empty())
    @rule()
    def end_with_tokens_inside_is_refused(self) -> None:
        assert not self._try(Step.END, [], [])

    @precondition(lambda self: not self.book.pot_is_empty())
    @rule(data=st.data())
    def overdraw_is_refused(self, data: st.DataObject) -> None:
        token = data.draw(st.sampled_from(sorted(self.book.pot)))
        extra = self.book.pot[token] + Decimal("0.000000000000000001")
        members = self.book.members() or sts.PLYR_IDS
        who = data.draw(st.sampled_from(members))
        assert not self._try(Step.EARN, [], [Payment(who, token, extra)])

    @rule()
    def hook_fails(self) -> None:
        self.book = fail(self.book)

    @invariant()
    def state_only_moves_forward(self) -> None:
        assert self.book.state.rank >= self.high_rank
        self.high_rank = self.book.state.rank

    @invariant()
    def pot_is_never_negative_and_adds_up(self) -> None:
        totals: dict[str, Decimal] = {}
        for (_, token), amount in self.book.paid.items():
            totals[token] = totals.get(token, Decimal(0)) + amount

        for (_, token), amount in self.book.earned.items():
            totals[token] = totals.get(token, Decimal(0)) - amount

        for token, amount in self.book.pot.items():
            assert amount >= 0
            assert amount == totals.get(token, Decimal(0))

    @invariant()
    def players_are_consistent(self) -> None:
        book = self.book
        for plyr_id, _ in book.paid:
            assert book.players[plyr_id].rank >= PlayerState.PAID.rank

        for plyr_id, _ in book.earned:
            assert book.players[plyr_id].rank >= PlayerState.EARNED.rank

        left = {p for p, s in book.players.items() if s is PlayerState.LEFT}
        assert left == self.ever_left
        if book.state is RoomState.ENDED:
            assert book.pot_is_empty()

        if book.state is RoomState.NEW:
            assert not book.players


RoomMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRoomMachine = RoomMachine.TestCase
