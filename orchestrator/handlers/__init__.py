"""Conversation handlers: the API a handler is written against, and the ones shipped.

from orchestrator.handlers import Conversation, ConversationRequest, Reply
"""

from orchestrator.handlers.api import (
    END_CLOSED_BY_SERVER,
    END_DISCONNECTED,
    END_SHUTDOWN,
    END_TERMINATED,
    Card,
    Conversation,
    ConversationRequest,
    Handler,
    HandlerObject,
    Reply,
    TurnTimings,
)

__all__ = [
    "END_CLOSED_BY_SERVER",
    "END_DISCONNECTED",
    "END_SHUTDOWN",
    "END_TERMINATED",
    "Card",
    "Conversation",
    "ConversationRequest",
    "Handler",
    "HandlerObject",
    "Reply",
    "TurnTimings",
]
