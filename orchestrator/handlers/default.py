"""The built-in conversation handler: useful out of the box, and a worked example.

It welcomes on init, remembers the user's name in a shared session variable
(which the UI or backend can also set through the sessions API), shows a
content card, tells the time, speaks unprompted on request, hands questions it
cannot answer to a Studio fallback skill, and echoes everything else. As a
handler object (``CONVERSATION_HANDLER=default``, built by ``build``) it also
asks whether the user is still there after ``IDLE_PROMPT_SECONDS`` of silence.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from orchestrator.config import Settings
from orchestrator.handlers import Card, Conversation, ConversationRequest, Reply
from orchestrator.sessions.model import Session

HELP = (
    "You can say: show me a card, what time is it, my name is ..., what is my name, "
    "announce followed by something for me to say, or anything else and I will repeat it."
)
IDLE_PROMPT = "Are you still there?"
_NAME_IS = re.compile(r"^(?:my name is|call me)\s+(?P<name>[\w' -]{1,40})$", re.IGNORECASE)
_ANNOUNCE = re.compile(r"^announce\s+(?P<text>.+)$", re.IGNORECASE)

ABOUT_CARD = Card(
    id="about",
    component="markdown",
    data={
        "text": (
            "**Orchestration companion**\n\n"
            "This card came from the server's conversation handler: the reply text "
            "carries `@showcards(about)` and the variable `public-about`."
        )
    },
)


def _normalise(text: str) -> str:
    """Runs of whitespace as one space, none at the ends, no closing ``.`` or ``!``."""
    return " ".join(text.split()).rstrip(".!")


async def handle(request: ConversationRequest, conversation: Conversation) -> Reply | None:
    """Answer one turn (see the module docstring for what it understands)."""
    name = request.session.variables.get("name")
    greeting_name = f", {name}" if isinstance(name, str) and name else ""
    if request.is_init:
        return Reply(
            f"Hello{greeting_name}! I am a digital person directed by the orchestration "
            "companion. Say help to hear what I can do."
        )
    text = _normalise(request.text)
    lowered = text.lower()
    if not text:
        return Reply("Sorry, I did not catch that.")
    if lowered in ("help", "what can you do", "what can you do?"):
        return Reply(HELP)
    if "card" in lowered and ("show" in lowered or lowered == "card"):
        return Reply("Here is a content card.", cards=(ABOUT_CARD,))
    if "time" in lowered and lowered.startswith("what"):
        now = datetime.now(UTC).strftime("%H:%M")
        return Reply(f"It is {now} UTC.", variables={"Current_Time_UTC": now})
    if match := _NAME_IS.match(text):
        new_name = match.group("name").strip()
        await conversation.set_variables({"name": new_name})
        return Reply(f"Nice to meet you, {new_name}.")
    if lowered.rstrip("?") in ("what is my name", "what's my name", "who am i"):
        if greeting_name:
            return Reply(f"Your name is {name}.")
        return Reply("You have not told me your name yet.")
    if match := _ANNOUNCE.match(text):
        await conversation.respond(Reply("Listen to this."), input_text=request.text)
        await conversation.speak(match.group("text"), can_be_interrupted=True)
        return None
    if lowered.endswith("?") or lowered.startswith(("why ", "how ", "who ", "where ")):
        return Reply("I do not know that one yet.", fallback=True)
    prefix = f"{name}, you said" if greeting_name else "You said"
    return Reply(f"{prefix}: {text}")


class DefaultHandler:
    """``handle`` with an idle prompt: the built-in ``default`` handler object."""

    interruptible = False

    async def handle(
        self, request: ConversationRequest, conversation: Conversation
    ) -> Reply | None:
        return await handle(request, conversation)

    async def on_idle(self, session: Session, seconds: float) -> Reply | None:
        return Reply(IDLE_PROMPT)


def build(settings: Settings) -> DefaultHandler:
    """``CONVERSATION_HANDLER=default`` (it needs no settings)."""
    return DefaultHandler()
