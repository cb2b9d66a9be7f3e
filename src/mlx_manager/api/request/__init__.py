"""The one request path every API shares. Each protocol package (openai, anthropic, responses) keeps only what is
its own: its schemas, the translation of its wire format into an `EngineRequest` (with the shared normaliser in
`normalize`), and the rendering of replies. Everything between is here, once:

    route -> <api>.translate -> EngineRequest -> start.Starter -> Backend (the Router: local engine or remote)

and, for streams, `streaming.sse` with the one mid-stream failure path `streaming.stream_failure`.
"""
