"""The control socket: wire protocol, transactions, flood limits, handshake, the
live connection and the commands run on it."""
