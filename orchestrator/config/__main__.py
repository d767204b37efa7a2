"""``python -m orchestrator.config --markdown | --env-example``: print a generated file."""

from __future__ import annotations

import argparse

from orchestrator.config.reference import render_env_example, render_markdown

parser = argparse.ArgumentParser(prog="python -m orchestrator.config", description=__doc__)
group = parser.add_mutually_exclusive_group(required=True)
group.add_argument("--markdown", action="store_true", help="docs/configuration.md")
group.add_argument("--env-example", action="store_true", help=".env.example")
args = parser.parse_args()
print(render_markdown() if args.markdown else render_env_example(), end="")
