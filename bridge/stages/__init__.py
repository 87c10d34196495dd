"""The pipeline's stages, composed in one list: `build_stages` is the only place they meet.

    detect -> repeat -> route -> silence -> group -> render -> enqueue

A new concern is one module and one line here. Silences and windows (`silence`) and
grouping (issue 11) go between route and render: both match on the rule that fired and must
see the match before anything is rendered; silence comes first, so a muted event never joins
a group. `bridge test`, `bridge render` and `replay` run this very list
without a store (so without enqueue), with a fixed or recorded clock and no sinks.
"""

from __future__ import annotations

from bridge.config.schema import Config
from bridge.detect import DetectSettings
from bridge.groups.digest import Digests
from bridge.render import Renderer, compile_when
from bridge.rules import RuleBook
from bridge.stages.base import Batch, Chain, Context, Match, RenderFailure, Skip, Stage
from bridge.stages.detect import Detect
from bridge.stages.enqueue import Enqueue
from bridge.stages.group import Group
from bridge.stages.memory import Memory
from bridge.stages.render import Render
from bridge.stages.repeat import Repeat
from bridge.stages.route import Route
from bridge.stages.silence import Silencing
from bridge.store.base import Store

__all__ = [
    "Batch", "Chain", "Context", "Match", "Memory", "RenderFailure", "Skip", "Stage",
    "build_stages", "stages_for",
]


def build_stages(config: Config, rulebook: RuleBook, renderer: Renderer,
                 store: Store | None = None) -> Chain:
    """The stages in order; with a store, the last one commits each batch to it."""
    stages: list[Stage] = [
        Detect(settings={s.name: DetectSettings.from_source(s) for s in config.sources},
               keep={s.name: s.ids for s in config.sources},
               down_after={s.name: s.down_after for s in config.sources}),
        Repeat(rulebook),
        Route(rulebook),
        Silencing(config.windows, store.active_silences if store is not None else None),
        # With a store, groups wait there for the flusher; without, they render at once.
        Group(None if store is not None else Digests(config, renderer)),
        Render(renderer, {s.name: s for s in config.sinks},
               {s.name: s.kind for s in config.sources}),
    ]
    if store is not None:
        stages.append(Enqueue(store))
    return Chain(tuple(stages))


def stages_for(config: Config, *, strict: bool = False) -> Chain:
    """The stages of `config` without a store: for `bridge test`, `bridge render`, replay.

    Raises TemplateError when a rule's `when` does not compile.
    """
    return build_stages(config, RuleBook(config.rules, compile_when),
                        Renderer(config, strict=strict))
