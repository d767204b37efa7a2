"""Conversation handlers: the API a handler is written against, and the ones shipped.

from orchestrator.handlers import Conversation, ConversationRequest, Reply
"""

from orchestrator.handlers.api import Card, Conversation, ConversationRequest, Handler, Reply

__all__ = ["Card", "Conversation", "ConversationRequest", "Handler", "Reply"]
