"""Platform token profiles: pure policy, minting and verification, one module each."""
