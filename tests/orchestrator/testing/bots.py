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


async def revised(request: ConversationRequest, conversation: Conversation) -> Reply | None:
    """The built-in handler after a change: "thanks" echoed in capitals, the card
    gone, and questions answered instead of handed to a fallback."""
    from orchestrator.handlers import default

    text = request.text.strip().lower()
    if text == "thanks":
        echo = await default.handle(request, conversation)
        return None if echo is None else Reply(echo.text.upper())
    if text == "show me a card":
        return Reply("Here is a content card.")
    if text.endswith("?"):
        return Reply("Let me find out.")
    return await default.handle(request, conversation)


async def concierge(request: ConversationRequest, conversation: Conversation) -> Reply:
    """Answers from a variable the backend sets through the sessions API."""
    if request.is_init:
        return Reply("Welcome.")
    if request.session.variables.get("vip"):
        return Reply("Right away.")
    return Reply("Please wait in line.")
