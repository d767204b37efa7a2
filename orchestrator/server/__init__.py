"""How uvicorn serves the app: the bounded WebSocket protocol and trusted forwarded headers."""
