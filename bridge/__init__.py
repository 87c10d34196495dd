"""bridge: watches SaaS job-status APIs and turns their changes into notifications.

Data flows one way: sources -> detect -> rules -> render -> outbox -> sinks.
"""

from __future__ import annotations

__version__ = "0.1.0"
