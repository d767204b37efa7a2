"""``--junit FILE``: the outcomes as JUnit XML, for CI (stdlib ``xml.etree``).

One ``testsuite`` per scenario file, one ``testcase`` per scenario; a failing
scenario carries a ``failure`` with the per-turn report, one that stopped early
an ``error``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from orchestrator.testing.suite import ScenarioOutcome, failure_lines


def junit_xml(outcomes: Sequence[ScenarioOutcome]) -> ET.ElementTree[ET.Element]:
    root = ET.Element("testsuites", name="orchestrator test")
    suites: dict[str, ET.Element] = {}
    for outcome in outcomes:
        source = outcome.scenario.source
        suite = suites.get(source)
        if suite is None:
            suite = suites[source] = ET.SubElement(root, "testsuite", name=source)
        case = ET.SubElement(
            suite,
            "testcase",
            classname=source,
            name=outcome.scenario.name,
            time=f"{outcome.seconds:.3f}",
        )
        if outcome.passed:
            continue
        details = "\n".join(failure_lines(outcome))
        if outcome.error is not None:
            element = ET.SubElement(case, "error", message=outcome.error)
        else:
            failed = [turn.label for turn in outcome.turns if not turn.passed]
            element = ET.SubElement(case, "failure", message="failed: " + ", ".join(failed))
        element.text = details
    for source, suite in suites.items():
        mine = [o for o in outcomes if o.scenario.source == source]
        suite.set("tests", str(len(mine)))
        suite.set("failures", str(sum(not o.passed and o.error is None for o in mine)))
        suite.set("errors", str(sum(o.error is not None for o in mine)))
        suite.set("time", f"{sum(o.seconds for o in mine):.3f}")
    root.set("tests", str(len(outcomes)))
    root.set("failures", str(sum(not o.passed and o.error is None for o in outcomes)))
    root.set("errors", str(sum(o.error is not None for o in outcomes)))
    return ET.ElementTree(root)


def write_junit(path: str | Path, outcomes: Sequence[ScenarioOutcome]) -> None:
    tree = junit_xml(outcomes)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
