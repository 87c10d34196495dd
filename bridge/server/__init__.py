"""The operator's surface: JSON API, push input, /metrics and the dashboard (contract 8)."""

from __future__ import annotations
