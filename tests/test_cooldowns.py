"""COOLDOWN: each member's budget of commands, per server, refilled after `per` seconds."""

from __future__ import annotations

import time

import discord
import pytest
from discord import app_commands
from discord.ext import commands
from hypothesis import given, settings
from hypothesis import strategies as st

import bot.chat.cooldowns
from bot.chat.captions import NoImage
from bot.chat.cooldowns import MemberCooldown, SlowDown
from bot.chat.replies import ours
from bot.config import Cooldown
from bot.errors import UserError
from bot.images.download import DownloadError
from bot.vision.scheduler import Busy
from bot.vision.service import OutOfMemory

GUILD, OTHER_GUILD = 10, 11
ALICE, BOB = 100, 101


class Clock:
    """Stands in for time.time(), which discord.py's Cooldown reads."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "time", fake)
    return fake


def spend(
    cooldown: MemberCooldown, times: int, guild: int | None = GUILD, user: int = ALICE
) -> None:
    for _ in range(times):
        cooldown.check(guild, user)


def test_off_means_never_slowed_down(clock: Clock) -> None:
    cooldown = MemberCooldown(None)
    spend(cooldown, 1000)
    spend(cooldown, 1000, guild=None)


def test_the_budget_is_rate_commands_then_slow_down(clock: Clock) -> None:
    cooldown = MemberCooldown(Cooldown(rate=3, per=60))
    spend(cooldown, 3)
    with pytest.raises(SlowDown) as error:
        cooldown.check(GUILD, ALICE)
    assert error.value.retry_after == pytest.approx(60)
    assert isinstance(error.value, UserError)
    assert str(error.value) == "Slow down a little: try again in 60 s."


def test_retry_after_counts_down_from_the_first_command(clock: Clock) -> None:
    cooldown = MemberCooldown(Cooldown(rate=2, per=60))
    cooldown.check(GUILD, ALICE)
    clock.advance(20)
    cooldown.check(GUILD, ALICE)
    clock.advance(15.5)
    with pytest.raises(SlowDown) as error:
        cooldown.check(GUILD, ALICE)
    assert error.value.retry_after == pytest.approx(24.5)
    assert "try again in 25 s" in str(error.value)  # rounded up, never promising too early
    clock.advance(24.3)
    with pytest.raises(SlowDown) as error:
        cooldown.check(GUILD, ALICE)
    assert "try again in 1 s" in str(error.value)  # never "0 s"


def test_the_budget_refills_after_per_seconds(clock: Clock) -> None:
    cooldown = MemberCooldown(Cooldown(rate=2, per=30))
    spend(cooldown, 2)
    with pytest.raises(SlowDown):
        cooldown.check(GUILD, ALICE)
    clock.advance(30.01)
    spend(cooldown, 2)  # a full budget again
    with pytest.raises(SlowDown):
        cooldown.check(GUILD, ALICE)


def test_retrying_while_slowed_down_does_not_push_the_refill_back(clock: Clock) -> None:
    cooldown = MemberCooldown(Cooldown(rate=1, per=10))
    cooldown.check(GUILD, ALICE)
    for _ in range(9):
        clock.advance(1)
        with pytest.raises(SlowDown):
            cooldown.check(GUILD, ALICE)
    clock.advance(1.01)
    cooldown.check(GUILD, ALICE)


def test_members_guilds_and_dms_have_separate_budgets(clock: Clock) -> None:
    cooldown = MemberCooldown(Cooldown(rate=1, per=60))
    cooldown.check(GUILD, ALICE)
    with pytest.raises(SlowDown):
        cooldown.check(GUILD, ALICE)
    cooldown.check(GUILD, BOB)  # another member
    cooldown.check(OTHER_GUILD, ALICE)  # the same user in another server
    cooldown.check(None, ALICE)  # in DMs
    for guild, user in ((GUILD, BOB), (OTHER_GUILD, ALICE), (None, ALICE)):
        with pytest.raises(SlowDown):
            cooldown.check(guild, user)


def test_separate_cooldowns_do_not_share_budgets(clock: Clock) -> None:
    setting = Cooldown(rate=1, per=60)
    first, second = MemberCooldown(setting), MemberCooldown(setting)
    first.check(GUILD, ALICE)
    second.check(GUILD, ALICE)


def test_real_clock_refill_with_a_short_period() -> None:
    cooldown = MemberCooldown(Cooldown(rate=1, per=0.05))
    cooldown.check(GUILD, ALICE)
    with pytest.raises(SlowDown) as error:
        cooldown.check(GUILD, ALICE)
    assert 0 < error.value.retry_after <= 0.05
    time.sleep(0.06)
    cooldown.check(GUILD, ALICE)


def test_forgetting_idle_members_keeps_spent_budgets(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory stays bounded by forgetting members whose budget is full, and only those."""
    monkeypatch.setattr(bot.chat.cooldowns, "MAX_TRACKED", 5)
    cooldown = MemberCooldown(Cooldown(rate=1, per=60))
    for user in range(200, 204):
        cooldown.check(GUILD, user)
    clock.advance(61)  # these four are idle again
    cooldown.check(GUILD, ALICE)
    for user in range(300, 330):  # newcomers force forgetting, again and again
        cooldown.check(GUILD, user)
        with pytest.raises(SlowDown):
            cooldown.check(GUILD, ALICE)
    clock.advance(61)
    for user in range(400, 500):
        cooldown.check(GUILD, user)
        clock.advance(61)
    assert len(cooldown._buckets) <= 5  # bounded while members come and go
    for user in range(200, 204):  # forgotten members start with a full budget
        cooldown.check(GUILD, user)


TICK = 1 / 64  # times on a 1/64 s grid are exact in floating point: no rounding at the edges


@settings(max_examples=200)
@given(
    rate=st.integers(1, 5),
    per=st.integers(1, 600 * 64).map(lambda n: n * TICK),
    gaps=st.lists(st.integers(0, 300 * 64).map(lambda n: n * TICK), min_size=1, max_size=30),
)
def test_retry_after_is_honest(rate: int, per: float, gaps: list[float]) -> None:
    """Slowed down only after `rate` commands within `per` seconds; the advertised wait is
    exactly enough."""
    clock = Clock()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", clock)
        cooldown = MemberCooldown(Cooldown(rate=rate, per=per))
        accepted: list[float] = []
        for gap in gaps:
            clock.advance(gap)
            try:
                cooldown.check(GUILD, ALICE)
            except SlowDown as error:
                wait = error.retry_after
                assert 0 < wait <= per
                assert len([t for t in accepted if t > clock.now - per]) >= rate
                ready_at = clock.now + wait
                clock.now = ready_at - TICK
                with pytest.raises(SlowDown):
                    cooldown.check(GUILD, ALICE)
                clock.now = ready_at
                cooldown.check(GUILD, ALICE)
            accepted.append(clock.now)


def test_a_command_given_back_can_be_spent_again_but_never_past_the_budget(clock: Clock) -> None:
    cooldown = MemberCooldown(Cooldown(rate=2, per=60))
    cooldown.give_back(GUILD, ALICE)  # nothing spent yet: nothing to give back
    spend(cooldown, 2)
    with pytest.raises(SlowDown):
        cooldown.check(GUILD, ALICE)
    cooldown.give_back(GUILD, ALICE)
    cooldown.check(GUILD, ALICE)
    with pytest.raises(SlowDown) as error:
        cooldown.check(GUILD, ALICE)
    assert error.value.retry_after == pytest.approx(60)  # the window did not move
    clock.advance(61)
    cooldown.give_back(GUILD, ALICE)  # refilled already
    spend(cooldown, 2)
    with pytest.raises(SlowDown):
        cooldown.check(GUILD, ALICE)


async def _answer(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("a caption")


SLASH = app_commands.Command(name="caption", description="Caption an image", callback=_answer)


@pytest.mark.parametrize(
    ("raised", "given_back"),
    [
        (Busy(), True),
        (OutOfMemory(), True),
        (RuntimeError("a bug of ours"), True),
        (DownloadError("Discord's media host timed out", transient=True), True),
        (DownloadError("the image is gone"), False),
        (NoImage(), False),
    ],
)
def test_only_the_bots_own_failures_of_a_command_that_ran_are_given_back(
    raised: Exception, given_back: bool
) -> None:
    text = commands.CommandInvokeError(raised)
    slash = commands.HybridCommandError(app_commands.CommandInvokeError(SLASH, raised))
    assert ours(text) is given_back and ours(slash) is given_back
    assert not ours(raised)  # not from a command's body: refused before the budget was spent
    assert not ours(SlowDown(3.0))
