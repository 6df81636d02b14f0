"""What the Worker's Cron Trigger does (wrangler.toml [triggers], every 15 minutes): the
export of new audit rows to R2 when the USAGE_EXPORT bucket is bound (export.py), then
retention of the usage log (retention.py), which deletes no row the export has not sent.
The adapter's `scheduled` handler calls `run` and nothing else.

Nothing raised here reaches the runtime: a failure is logged (and, for the export,
counted in D1), and the next run takes up what this one left.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping

from relay.config import ConfigError, settings_for
from relay.log import log
from relay.services import Services
from relay.usage import export, retention


async def run(env: Mapping[str, str | None], services: Services, now: float) -> None:
    try:
        settings = settings_for(env, services.state)
    except ConfigError as exc:
        log(f"scheduled: configuration error: {exc.problem}")
        return
    db = services.db
    if db is None:
        log("scheduled: no D1 database bound as DB: nothing to do")
        return
    through_id = None
    try:
        if services.exports is not None:
            done = await export.run(db, services.exports, now)
            through_id = done.through_id
            log(
                f"scheduled: export wrote {done.rows} audit rows in {done.files} files, through row "
                f"{done.through_id}" + (f"; stopped: {done.failure}" if done.failure else "")
            )
        deleted = await retention.prune(db, retention.cutoff(now, settings.retention_days), through_id=through_id)
    except Exception:
        log("scheduled: failed\n" + traceback.format_exc(limit=3))
        return
    log(f"scheduled: retention deleted {deleted} audit rows older than {settings.retention_days} days")
