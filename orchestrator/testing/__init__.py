"""Testing a conversation before it ships: scenario files and a pytest API.

``conversation`` runs a handler in-process, turn by turn (``harness``);
``FakeModel`` and ``FakeBackend`` stand in for an LLM API and a webhook
backend (``fakes``); ``play`` runs a list of user turns (``engine``).
"""

from orchestrator.testing.engine import Played, play
from orchestrator.testing.fakes import FakeBackend, FakeModel, ModelAnswer, ToolCall
from orchestrator.testing.harness import ConversationRun, conversation
from orchestrator.testing.results import TurnResult

__all__ = [
    "ConversationRun",
    "FakeBackend",
    "FakeModel",
    "ModelAnswer",
    "Played",
    "ToolCall",
    "TurnResult",
    "conversation",
    "play",
]
