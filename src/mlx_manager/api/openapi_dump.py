"""Write the server's OpenAPI document to a file (the UI's TypeScript client is generated from it).

python -m mlx_manager.api.openapi_dump ui/openapi.json
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path


def dump(out: Path) -> None:
    """Build the app in a throwaway MLX_MANAGER_HOME (building it opens a database) and write its schema."""
    with tempfile.TemporaryDirectory() as home:
        os.environ["MLX_MANAGER_HOME"] = home
        from mlx_manager.api.app import create_app
        from mlx_manager.config import Settings

        app = create_app(Settings())
        schema = app.openapi()
        app.state.db.dispose()
    out.write_text(json.dumps(schema, indent=2) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m mlx_manager.api.openapi_dump OUT.json", file=sys.stderr)
        return 2
    dump(Path(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
