"""``orchestrator test PATH...``: run scenario files; exit 0 (all pass), 1 (any
fails) or 2 (bad usage, a bad file, a configuration error), with one line for
the last and no traceback."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from orchestrator.config import Settings

if TYPE_CHECKING:
    from orchestrator.testing.scenario import Scenario

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_ERROR = 2


def add_test_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    settings: Callable[[], Settings],
) -> None:
    test = sub.add_parser(
        "test",
        help="run scenario files (YAML or JSON) through the handler, or against --url",
        description="Run conversation scenarios (docs/testing.md).",
    )
    test.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or directories")
    target = test.add_mutually_exclusive_group()
    target.add_argument(
        "--handler",
        help="the handler to test: default, webhook, llm or module:callable "
        "(default: CONVERSATION_HANDLER)",
    )
    target.add_argument(
        "--url", help="test a running server (its base URL, e.g. http://127.0.0.1:8080)"
    )
    test.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    test.add_argument(
        "--settle",
        type=float,
        default=0.3,
        help="with --url: seconds of quiet that end a turn when the server's end of turn "
        "cannot be followed (default 0.3)",
    )
    test.set_defaults(func=lambda args: run_command(args, settings))


def run_command(
    args: argparse.Namespace, settings: Callable[[], Settings], out: TextIO | None = None
) -> int:
    # Imported here: every other command starts without the handler stack and openai.
    from orchestrator.config import SettingsError
    from orchestrator.handlers.loader import HandlerLoadError
    from orchestrator.logs import configure_logging
    from orchestrator.testing.scenario import ScenarioError, load_file, scenario_files
    from orchestrator.testing.suite import TargetUnavailable

    out = sys.stdout if out is None else out
    try:
        scenarios = [s for path in scenario_files(args.paths) for s in load_file(path)]
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    loaded = settings()  # exits 2 itself on a configuration error
    configure_logging(json=False, level="warning", secrets=loaded.secrets)
    try:
        return asyncio.run(_run(args, loaded, scenarios, out))
    except (HandlerLoadError, SettingsError, ScenarioError, TargetUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # --junit FILE not writable
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


async def _run(
    args: argparse.Namespace, settings: Settings, scenarios: list[Scenario], out: TextIO
) -> int:
    from orchestrator.testing.judge import Judge
    from orchestrator.testing.junit import write_junit
    from orchestrator.testing.suite import (
        HandlerTarget,
        ScenarioOutcome,
        ServerTarget,
        Target,
        report,
        run_scenario,
        summary,
    )

    judge = None
    if any(expect.judge for scenario in scenarios for expect in scenario.expectations):
        judge = Judge.from_settings(settings)
    target: Target
    if args.url:
        target = ServerTarget(args.url, settle=args.settle)
        for scenario in scenarios:
            if scenario.handler:
                print(
                    f"note: {scenario.label}: handler {scenario.handler!r} ignored with --url "
                    "(the server's own handler answers)",
                    file=sys.stderr,
                )
    else:
        target = HandlerTarget(settings, args.handler or settings.conversation_handler, scenarios)
    began = time.perf_counter()
    outcomes: list[ScenarioOutcome] = []
    try:
        for scenario in scenarios:
            outcome = await run_scenario(scenario, target, judge)
            report(outcome, out)
            outcomes.append(outcome)
    finally:
        await target.aclose()
        if judge is not None:
            await judge.aclose()
    print(summary(outcomes, time.perf_counter() - began), file=out)
    if args.junit:
        write_junit(args.junit, outcomes)
    return EXIT_PASSED if all(o.passed for o in outcomes) else EXIT_FAILED
