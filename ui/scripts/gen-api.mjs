// Regenerate src/lib/api/schema.d.ts from the server's OpenAPI document:
//   npm run gen:api                       (from ../ui/openapi.json, dumped by `python -m mlx_manager.api.openapi_dump`)
//   npm run gen:api -- http://127.0.0.1:8080/openapi.json   (from a running server)
import { execFileSync } from 'node:child_process';
const source = process.argv[2] ?? 'openapi.json';
execFileSync('npx', ['openapi-typescript', source, '--default-non-nullable', 'false', '-o', 'src/lib/api/schema.d.ts'], { stdio: 'inherit' });
