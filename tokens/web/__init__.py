"""The token routes over HTTP (Starlette): bodies, errors, bearer and API-key
checks, and one routes module per profile."""
