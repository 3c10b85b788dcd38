"""Is every event still readable across a rolling upgrade? The schemas of the last release,
kept in `released_events.json`, against the models of this code.

A change breaks compatibility when a consumer of one side cannot read an event of the other:
- an event type and version of the release that this code no longer has;
- a field the release requires that is gone, or no longer required (a newer producer may omit
  it; an older consumer needs it);
- a field required now that the release did not require (an older producer's event lacks it);
- a field whose kind changed (its JSON type, the model it holds, or its allowed values).
A new optional field is compatible: readers ignore fields they do not know.

`python -m shared.compatibility release` writes the file anew: run it when a release is cut.
`make test` fails on a breaking change (tests/unit/test_compatibility.py).
"""

import json
import sys
from pathlib import Path
from typing import Any

from shared.events import EVENT_MODELS

RELEASED_FILE = Path(__file__).with_name("released_events.json")

Schema = dict[str, Any]


def current_schemas() -> dict[str, Schema]:
    """Every event's JSON schema, keyed `type@vN`."""
    return {
        f"{event_type}@v{version}": model.model_json_schema()
        for (event_type, version), model in sorted(EVENT_MODELS.items())
    }


def breaking_changes(released: dict[str, Schema], current: dict[str, Schema]) -> list[str]:
    found: list[str] = []
    for key, old in sorted(released.items()):
        new = current.get(key)
        if new is None:
            found.append(f"{key}: gone")
            continue
        found += _compare(key, old, old, new, new)
    return found


def _compare(where: str, old: Schema, old_root: Schema, new: Schema, new_root: Schema) -> list[str]:
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    found: list[str] = []
    if _kind(old, old_root) != _kind(new, new_root):
        return [f"{where}: was {_kind(old, old_root)}, is {_kind(new, new_root)}"]
    if "properties" in old:
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for name in sorted(old_required - new_required):
            state = "gone" if name not in new.get("properties", {}) else "no longer required"
            found.append(f"{where}.{name}: required by the release, {state}")
        for name in sorted(new_required - old_required):
            found.append(f"{where}.{name}: required now, absent from the release's events")
        for name, old_field in old["properties"].items():
            new_field = new.get("properties", {}).get(name)
            if new_field is not None:
                found += _compare(f"{where}.{name}", old_field, old_root, new_field, new_root)
    if "items" in old and "items" in new:
        found += _compare(f"{where}[]", old["items"], old_root, new["items"], new_root)
    for branch in ("anyOf", "oneOf"):
        if branch in old and branch in new and len(old[branch]) == len(new[branch]):
            for number, (a, b) in enumerate(zip(old[branch], new[branch], strict=True)):
                found += _compare(f"{where}<{number}>", a, old_root, b, new_root)
    return found


def _resolve(schema: Schema, root: Schema) -> Schema:
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _kind(schema: Schema, root: Schema) -> str:
    """What a value must be, shallowly: its JSON type, its allowed values, or its branches."""
    schema = _resolve(schema, root)
    if "enum" in schema or "const" in schema:
        return f"one of {sorted(map(str, schema.get('enum', [schema.get('const')])))}"
    if "anyOf" in schema or "oneOf" in schema:
        branches: list[Schema] = schema.get("anyOf") or schema.get("oneOf") or []
        return " or ".join(sorted(_kind(branch, root) for branch in branches))
    kind = schema.get("type", "any")
    return "object" if "properties" in schema else str(kind)


def main() -> None:
    if sys.argv[1:] != ["release"]:
        sys.exit("usage: python -m shared.compatibility release")
    RELEASED_FILE.write_text(json.dumps(current_schemas(), indent=1, sort_keys=True) + "\n")
    print(f"{len(current_schemas())} event schemas written to {RELEASED_FILE}")


if __name__ == "__main__":
    main()
