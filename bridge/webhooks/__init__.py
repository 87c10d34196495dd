"""What webhook consumers get: the event catalog, its JSON Schemas, examples and docs.

`catalog` defines the default webhook body (contract section 6) as typed models, one per
event type; `render.envelope` builds every body through them, so the published schemas are
the code. `examples` renders a sample of each type through the real renderer and signer, and
`docs` writes `docs/webhooks.md` from both. Nothing is imported here, so `bridge.render` can
import `catalog` without pulling in the renderer again.
"""
