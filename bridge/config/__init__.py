"""Configuration: the rules.toml schema and its loader."""

from __future__ import annotations

from bridge.config.loader import load_config, load_settings, parse_config
from bridge.config.schema import Config

__all__ = ["Config", "load_config", "load_settings", "parse_config"]
