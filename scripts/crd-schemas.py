"""Turn CustomResourceDefinitions into the JSON schemas kubeconform reads.

    python scripts/crd-schemas.py OUT_DIR CRD.yaml...

Writes ``OUT_DIR/<group>/<kind lower case>_<version>.json`` (kubeconform's
``{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json``) for every served
version of each CRD: its ``openAPIV3Schema``, made strict the way kubeconform's own
openapi2jsonschema.py does it (an object schema with properties and no
``additionalProperties`` rejects unknown fields, unless it says
``x-kubernetes-preserve-unknown-fields``), so a misspelled field fails validation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def strict(schema: Any) -> Any:
    """The schema with unknown properties rejected wherever properties are listed."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def main(argv: list[str]) -> int:
    """Extract every CRD file named on the command line."""
    out_dir = Path(argv[0])
    for crd_file in argv[1:]:
        crd = yaml.safe_load(Path(crd_file).read_text())
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"].lower()
        for version in crd["spec"]["versions"]:
            if not version.get("served", True):
                continue
            schema = strict(version["schema"]["openAPIV3Schema"])
            target = out_dir / group / f"{kind}_{version['name']}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(schema, indent=1))
            print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
