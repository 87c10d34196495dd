"""The outbox claim: the due rows a delivery worker takes next, most urgent first, each
job's rows in order (bridge.store.sqlbase `claim_due`)."""

from __future__ import annotations

from bridge.store.sql import OUTBOX_COLS

# A row is not claimed while an earlier row of the same (sink, job) waits for its retry or is
# held by another claimer: a job's notifications reach a sink in order (a Slack edit never
# goes back to an older state). Earlier rows that are due now come first in the same batch.
# The most urgent rows are claimed first, but a job's rows keep their order: every due row of
# a job takes the urgency of its job's most urgent due row (`urgent`), so a failure pulls its
# job's earlier "started" row along instead of overtaking it, and within one urgency the
# oldest rows come first.
# Cost: a claim must not cost the whole backlog (with 20,000 rows pending, sorting them all
# took 140 ms per claim of 50). `win` reads the first `limit` claimable rows in the order of
# the `outbox_claim` index (urgency, age) and stops there; `cand` adds the earlier due rows
# of the jobs in it, which come along whatever their own urgency. So the claim costs the
# rows it takes (and each one's job), not the backlog. The one difference from sorting
# everything: a job's later, less urgent rows beyond the window wait for the next claim
# instead of riding along with its urgent one (they would come after it in any case).
# The unary `+` (and `|| ''` for text) keeps a column out of the index choice (SQLite has
# no statistics here and would pick `outbox_due` and sort); CROSS JOIN makes SQLite look
# up the window's jobs, not scan the outbox for them.
_BLOCKED = (
    "SELECT 1 FROM outbox b WHERE b.sink = {t}.sink AND b.source = {t}.source "
    "AND b.job_id = {t}.job_id AND b.status = 'pending' AND +b.next_attempt_us > ? "
    "AND b.created_us <= {t}.created_us"
)
# `status = 'pending'` again on the UPDATE itself: in PostgreSQL a row another instance
# superseded (bridge.store.coalesce) after this statement's snapshot is still locked by the
# final SELECT's FOR UPDATE, which re-checks only its own WHERE; the UPDATE re-checks its
# conditions on the row's newest version and leaves it alone.
CLAIM_DUE = (
    "UPDATE outbox SET next_attempt_us = ?, leased = 1 WHERE status = 'pending' AND id IN ("
    "WITH win AS (SELECT w.id, w.sink, w.source, w.job_id, w.created_us FROM outbox w "
    "WHERE w.status = 'pending' AND +w.next_attempt_us <= ?{sink} "
    f"AND NOT EXISTS ({_BLOCKED.format(t='w')}) "
    "ORDER BY w.priority, w.created_us, w.id LIMIT ?{win_lock}), "
    "cand AS (SELECT id FROM win UNION SELECT p.id FROM "
    "(SELECT sink, source, job_id, MAX(created_us) AS last_us FROM win "
    "WHERE job_id IS NOT NULL GROUP BY sink, source, job_id) j "
    "CROSS JOIN outbox p WHERE p.sink = j.sink AND p.source = j.source "
    "AND p.job_id = j.job_id AND p.status = 'pending' AND +p.next_attempt_us <= ? "
    "AND p.created_us <= j.last_us "
    f"AND NOT EXISTS ({_BLOCKED.format(t='p')})), "
    "urgent AS (SELECT sink, source, job_id, MIN(priority) AS rank FROM outbox "
    "WHERE id IN (SELECT id FROM cand) AND job_id IS NOT NULL GROUP BY sink, source, job_id) "
    "SELECT o.id FROM outbox o "
    "LEFT JOIN urgent u ON u.sink = o.sink AND u.source = o.source AND u.job_id = o.job_id "
    "WHERE o.id IN (SELECT id FROM cand) "
    "ORDER BY COALESCE(u.rank, o.priority), o.created_us, o.id LIMIT ?{lock}) "
    "RETURNING " + OUTBOX_COLS
)
CLAIM_SINK_FILTER = " AND w.sink || '' = ?"
