"""The code in docs/operators.md is the code of the example DAGs, marker for marker."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC_SNIPPET = re.compile(r"<!-- snippet: (\S+) -->\n```python\n(.*?)```\n<!-- end snippet -->", re.S)
EXAMPLE_SNIPPET = re.compile(r"# \[START (\S+)\]\n(.*?)\s*# \[END \1\]", re.S)


def test_every_doc_snippet_matches_its_example() -> None:
    examples = {
        name: body.rstrip() + "\n"
        for path in (REPO / "dags_examples").glob("*.py")
        for name, body in EXAMPLE_SNIPPET.findall(path.read_text())
    }
    doc = (REPO / "docs" / "operators.md").read_text()
    snippets = DOC_SNIPPET.findall(doc)
    assert {name for name, _ in snippets} == set(examples) == {"howto_submit_and_wait", "howto_job_complete_sensor"}
    for name, code in snippets:
        assert textwrap.dedent(code) == textwrap.dedent(examples[name]), name
