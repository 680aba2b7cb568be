"""The agreement store as the ``agreements``, ``feedback`` and ``usage`` commands open it: one Redis client
and, for commands that act, the operator log (``audit.operator``); both closed when the command ends, and
the same exit codes for the same failures."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import settings as settings_mod

if TYPE_CHECKING:
    from agreements.store import AgreementStore


async def with_store(
    command: str,
    args: argparse.Namespace,
    act: Callable[[AgreementStore], Awaitable[None]],
    user_errors: tuple[type[Exception], ...] = (),
    *,
    logged: bool = True,
) -> int:
    """``act`` on the store: 0 when it ends, 2 on one of ``user_errors`` (a bad id, state or value), 1 when
    Redis cannot be reached. ``logged``: operator actions are written to ``audit.operator``."""
    import redis.asyncio as aioredis

    from agreements.action_log import ActionLog
    from agreements.store import AgreementStore
    from schemas import Naming

    settings = settings_mod.load()
    naming = Naming(topic_prefix=getattr(args, "topic_prefix", ""), redis_prefix=args.redis_prefix)
    client = aioredis.from_url(settings.redis_url)
    log = ActionLog(settings.kafka_bootstrap, naming) if logged else None
    try:
        await act(AgreementStore(client, naming, log))
    except user_errors as err:
        print(f"shfeeds {command}: {err}", file=sys.stderr)
        return 2
    except (aioredis.RedisError, OSError) as err:
        print(f"shfeeds {command}: Redis unavailable: {err}", file=sys.stderr)
        return 1
    finally:
        if log is not None:
            await log.close()
        await client.aclose()
    return 0
