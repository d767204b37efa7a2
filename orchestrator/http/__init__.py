"""The HTTP surface: token mounting, the sessions API, rate limiting, operations
routes and the developer console."""
