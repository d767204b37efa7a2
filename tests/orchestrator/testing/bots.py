"""Handlers for the testing package's tests (importable by a server subprocess too)."""

from __future__ import annotations

from orchestrator.handlers import Card, Conversation, ConversationRequest, Reply


async def greeter(request: ConversationRequest, conversation: Conversation) -> Reply:
    """Greets with the claims and variables the session started with; remembers
    the last line (a shared variable); shows a card on "card"; falls back on "?"."""
    session = request.session
    if request.is_init:
        return Reply(f"Hello {session.claims.get('user')} on {session.variables.get('plan')}")
    await conversation.set_variables({"last": request.text})
    if request.text == "card":
        return Reply("A card.", cards=(Card("menu", "markdown", {"text": "menu"}),))
    return Reply(
        f"heard {request.text}", variables={"turn_only": True}, fallback=request.text.endswith("?")
    )
