"""Write the declarative spec's reference from its JSON Schema (provider/.../core/dialects/spec_schema.py):
the tables between the spec-reference markers of docs/dialects.md, and docs/declarative-spec.schema.json.

Usage: python scripts/spec_reference.py [--check]   (--check: exit 1 naming the files that differ)
tests/unit/test_spec_reference.py fails when the docs are not what this script writes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from jobservice_provider.core.dialects.spec_schema import reference_markdown, schema_json

ROOT = Path(__file__).resolve().parent.parent
DIALECTS_DOC = ROOT / "docs" / "dialects.md"
SCHEMA_FILE = ROOT / "docs" / "declarative-spec.schema.json"
_BLOCK = re.compile(r"(<!-- spec-reference:start -->\n).*?(<!-- spec-reference:end -->)", re.S)


def expected() -> dict[Path, str]:
    """What each generated file should hold."""
    doc = DIALECTS_DOC.read_text(encoding="utf-8")
    if not _BLOCK.search(doc):
        raise SystemExit(f"{DIALECTS_DOC}: the spec-reference markers are missing")
    generated = _BLOCK.sub(lambda m: m.group(1) + reference_markdown() + "\n" + m.group(2), doc)
    return {DIALECTS_DOC: generated, SCHEMA_FILE: schema_json()}


def main(argv: list[str]) -> int:
    stale = [path for path, text in expected().items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(ROOT)} differs from what scripts/spec_reference.py writes", file=sys.stderr)
        return 1 if stale else 0
    for path, text in expected().items():
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
